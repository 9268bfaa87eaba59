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


def main_module_name():
    """The name absl files the running program's own flags under (its script path)."""
    return sys.argv[0] if sys.argv and sys.argv[0] else "__main__"


def adopt_trainer_flags(module=None, flag_values=None):
    """Make every flag a ``trainers.*`` module defined in this process a key flag of
    the program `module` (default: the running one), so ``--help`` lists the program's
    own flags and the shared ones it uses (absl's short help shows only a program's key
    flags; absl's, absltest's and TensorFlow's own flags stay in ``--helpfull``)."""
    flag_values = flag_values or flags.FLAGS
    module = module or main_module_name()
    for name, module_flags in list(flag_values.flags_by_module_dict().items()):
        if name.startswith("trainers.") and name != module:
            for flag in module_flags:
                flag_values.register_key_flag_for_module(module, flag)


def run(main, argv=None):
    """`absl.app.run(main)` with one-line errors for `TrainerError` and bad flags, and
    a ``--help`` that lists the program's flags (see `adopt_trainer_flags`)."""

    def guarded(argv):
        try:
            return main(argv)
        except TrainerError as e:
            fail(e, getattr(e, "exit_code", 1))

    adopt_trainer_flags()
    app.run(guarded, argv=argv, flags_parser=_parse_flags)
