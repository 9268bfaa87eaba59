"""The one error type for what a user can get wrong, and how a deep failure is shown
in one line (`trainers.common.cli.run` prints ``error: <message>`` for it)."""


class TrainerError(Exception):
    """A problem with the user's input or environment, reported in one line."""


def first_line(error):
    """The first line of an exception's message, or its type's name if it has none:
    what a one-line error shows of a failure deep inside a library."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
