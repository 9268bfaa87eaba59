"""The one error type for what a user can get wrong, and how a deep failure is shown
in one line (`trainers.common.cli.run` prints ``error: <message>`` for it)."""


class TrainerError(Exception):
    """A problem with the user's input or environment, reported in one line."""


# The status of a program that stopped before its end and resumes when rerun (TensorFlow's
# preemption handling uses the same; schedulers read it as "restart me").
RESTART_EXIT_CODE = 42


class Interrupted(TrainerError):
    """Stopped before the end (a signal, a lost peer) with the work saved: rerunning the
    same command resumes. A sweep's trial that ends so is run again, not failed."""

    exit_code = RESTART_EXIT_CODE


def first_line(error):
    """The first line of an exception's message, or its type's name if it has none:
    what a one-line error shows of a failure deep inside a library."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


# An input pipeline that finds a file it cannot read asserts with this marker and the
# file's path (`tf.debugging.Assert(ok, [UNREADABLE_FILE, path])`, e.g. the image folders'
# decoder); the runner turns the assertion into one line naming the file.
UNREADABLE_FILE = "unreadable input file"


def unreadable_file(error):
    """`TrainerError` naming the file of an `UNREADABLE_FILE` assertion in `error`'s
    message, else None."""
    import re

    m = re.search(re.escape(UNREADABLE_FILE) + r"[^\]]*\] \[(?:b')?([^\]']+)", str(error))
    if not m:
        return None
    return TrainerError(f"{m.group(1)}: {UNREADABLE_FILE} (not a JPEG, PNG, GIF or BMP "
                        "image); remove or replace it")
