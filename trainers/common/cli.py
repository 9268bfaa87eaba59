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


def fail(message, code=1):
    """Print the one-line error and exit `code` (1; a preempted run: its restart code)."""
    message = " ".join(str(message).split())
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def _parse_flags(argv):
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        fail(e)


def run(main, argv=None):
    """`absl.app.run(main)` with one-line errors for `TrainerError` and bad flags (the
    program's ``--help`` lists its key flags: its own and the generated ones it uses,
    `config.define_flags`)."""

    def guarded(argv):
        try:
            return main(argv)
        except TrainerError as e:
            fail(e, getattr(e, "exit_code", 1))

    app.run(guarded, argv=argv, flags_parser=_parse_flags)
