"""Files that other workers or a resumed run may read while they are written."""

import os


def write_text_atomically(path, text):
    """Write `text` (UTF-8) to `path` through a temporary file and `os.replace`:
    a reader sees the old file or the whole new one, never half of it."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
