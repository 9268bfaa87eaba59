"""Run an absl main so that bad input ends in one line on stderr and exit 1.

Anything the user can get wrong (a flag value, a missing file, a corpus too
small, an unreachable TPU) is raised as `TrainerError` with a message that
names the problem; `run` prints ``error: <message>`` and exits non-zero
instead of a TensorFlow traceback. A flag-parsing error is reported the same
way. Real bugs still show their traceback.
"""

import sys

from absl import app
from absl import flags

from trainers.common.errors import TrainerError, first_line  # noqa: F401 - re-exported


def fail(message):
    """Print the one-line error and exit 1."""
    message = " ".join(str(message).split())
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def _parse_flags(argv):
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        fail(e)


def run(main, argv=None):
    """`absl.app.run(main)` with one-line errors for `TrainerError` and bad flags."""

    def guarded(argv):
        try:
            return main(argv)
        except TrainerError as e:
            fail(e)

    app.run(guarded, argv=argv, flags_parser=_parse_flags)
