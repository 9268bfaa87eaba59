"""The training programs (``python -m trainers.<name>``) and what they share.

Importing this package (every program does, first) quiets TensorFlow's C++ log
lines -- ``failed call to cuInit`` on hosts without a GPU, ``GeneratorDatasetOp
... will not be optimized`` at every evaluation, ``Ignoring Assert operator`` --
which otherwise drown the programs' own progress lines: it sets
``TF_CPP_MIN_LOG_LEVEL=3`` before TensorFlow is imported, unless it is set already.
To see them again, set it yourself::

    TF_CPP_MIN_LOG_LEVEL=0 python -m trainers.bert_pretrain ...

(TensorFlow reads the variable once, at import, so it cannot be a flag.) A few
lines that CUDA's loader prints before TensorFlow's logging starts ("Could not
find cuda drivers", "All log messages before absl::InitializeLog()") ignore it.
"""

import os

QUIET_TF_LOG_LEVEL = "3"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", QUIET_TF_LOG_LEVEL)
