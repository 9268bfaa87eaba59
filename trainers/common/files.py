"""Every file a trainer reads or writes, through `tf.io.gfile`.

So ``--model_dir=gs://bucket/run`` (or ``ram://``, ``hdfs://``, ...) works like a
local path: ``os.makedirs("gs://b/x")`` would make a local folder ``./gs:/b/x``.
TensorFlow is imported on first use, not at import (the flag modules import this).

Atomic writes go through a temporary file and ``gfile.rename(overwrite=True)``: a
reader (another worker, a resumed run) sees the old file or the whole new one.
"""

import os
import posixpath
import shutil
import tempfile

from trainers.common.errors import TrainerError, first_line


def _gfile():
    import tensorflow as tf

    return tf.io.gfile


def is_remote(path):
    """Whether `path` names a non-local filesystem (``scheme://...``)."""
    return "://" in str(path)


def join(path, *parts):
    """`os.path.join`, but with ``/`` on a ``scheme://`` path."""
    return posixpath.join(path, *parts) if is_remote(path) else os.path.join(path, *parts)


def dirname(path):
    return posixpath.dirname(path) if is_remote(path) else os.path.dirname(path)


def basename(path):
    return posixpath.basename(path) if is_remote(path) else os.path.basename(path)


def absolute(path):
    """`path` with the local user's home expanded and made absolute (a remote one as
    given): for local places the user names, e.g. a cache under ``~``."""
    return path if is_remote(path) else os.path.abspath(os.path.expanduser(path))


def exists(path):
    return _gfile().exists(path)


def isdir(path):
    return _gfile().isdir(path)


def isfile(path):
    gfile = _gfile()
    return gfile.exists(path) and not gfile.isdir(path)


def glob(pattern):
    return _gfile().glob(pattern)


def listdir(path):
    return _gfile().listdir(path)


def size(path):
    """The file's length in bytes."""
    return _gfile().stat(path).length


def remove(path):
    """Remove the file `path` if it exists."""
    _clear(path)


def remove_tree(path):
    """Remove the directory `path` and everything in it, if it exists."""
    gfile = _gfile()
    if not gfile.exists(path):
        return
    try:
        gfile.rmtree(path)
    except Exception:  # noqa: BLE001 - ram:// has no directories to delete: its files go
        for directory, _, names in gfile.walk(path):
            for name in names:
                _clear(join(directory, name))


def rename(source, target):
    """Move `source` to `target`, replacing it (one atomic step on a local disk)."""
    _gfile().rename(source, target, overwrite=True)


def open_file(path, mode="r"):
    """A file object (`tf.io.gfile.GFile`): ``with files.open_file(p, "rb") as f``."""
    return _gfile().GFile(path, mode)


def makedirs(path, what="--model_dir"):
    """Create `path` (and its parents) unless it exists; a FILE of that name, or a place
    that cannot be written, is a TrainerError naming `what`."""
    gfile = _gfile()
    if gfile.exists(path) and not gfile.isdir(path):
        raise TrainerError(f"{what}={path} exists and is a file, not a directory")
    try:
        gfile.makedirs(path)
    except Exception as e:  # noqa: BLE001 - any filesystem's refusal, in one line
        raise TrainerError(f"cannot create {what}={path}: {first_line(e)}") from e


def read_text(path, errors=None):
    """The file's text (UTF-8; ``errors="replace"`` for a log that may hold bad bytes)."""
    with _gfile().GFile(path, "rb") as f:
        return f.read().decode("utf-8", errors or "strict")


def _clear(path):
    """Remove the file `path` if it exists: TensorFlow's ram:// filesystem appends
    to a file that a "w" open or a copy should have replaced."""
    gfile = _gfile()
    if gfile.exists(path) and not gfile.isdir(path):
        gfile.remove(path)


def write_text(path, text):
    _clear(path)
    with _gfile().GFile(path, "w") as f:
        f.write(text)


def append_text(path, text):
    """Append `text` to `path` (a filesystem without appends gets a rewrite)."""
    gfile = _gfile()
    try:
        with gfile.GFile(path, "a") as f:
            f.write(text)
    except Exception:  # noqa: BLE001 - e.g. object stores that cannot append
        old = read_text(path) if gfile.exists(path) else ""
        write_text_atomically(path, old + text)


def write_text_atomically(path, text):
    """Write `text` (UTF-8) to `path` through a temporary file and a rename:
    a reader sees the old file or the whole new one, never half of it."""
    tmp = f"{path}.tmp{os.getpid()}"
    write_text(tmp, text)
    _gfile().rename(tmp, path, overwrite=True)


def copy_tree(source, target):
    """Copy the directory `source` into `target` (created), file by file via gfile."""
    gfile = _gfile()
    gfile.makedirs(target)
    for directory, subdirs, names in gfile.walk(source):
        rel = directory[len(source):].lstrip("/").lstrip(os.sep)
        out = join(target, rel) if rel else target
        gfile.makedirs(out)
        for name in names:
            _clear(join(out, name))
            gfile.copy(join(directory, name), join(out, name), overwrite=True)


class LocalCopy:
    """A local directory for a library that only writes (or reads) local paths, e.g.
    Keras' ``save_to_preset`` / ``from_preset`` on ``ram://``:

        with LocalCopy(export_dir, write=True) as local:  # copied to export_dir at exit
            backbone.save_to_preset(local)
        with LocalCopy(preset_dir) as local:              # a local copy of preset_dir
            keras_hub.models.BertBackbone.from_preset(local)

    A local `path` is used as it is.
    """

    def __init__(self, path, write=False):
        self.path, self.write = path, write
        self._tmp = None

    def __enter__(self):
        if not is_remote(self.path):
            if self.write:
                os.makedirs(self.path, exist_ok=True)
            return self.path
        self._tmp = tempfile.mkdtemp(prefix="acclip_tf_gfile_")
        local = os.path.join(self._tmp, "d")
        if self.write:
            os.makedirs(local)
        else:
            copy_tree(self.path, local)
        return local

    def __exit__(self, exc_type, exc, tb):
        if self._tmp is None:
            return False
        try:
            if self.write and exc_type is None:
                copy_tree(os.path.join(self._tmp, "d"), self.path)
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)
        return False


def save_keras_model(model, path):
    """`model.save(path)` (a ``.keras`` file) on any gfile filesystem: Keras writes
    local files, so a ``scheme://`` path gets a local temporary file and a copy."""
    if not is_remote(path):
        model.save(path)
        return path
    with LocalCopy(dirname(path), write=True) as local:
        model.save(os.path.join(local, posixpath.basename(path)))
    return path


def display(path):
    """`path` as a message shows it: absolute when local."""
    return path if is_remote(path) else os.path.abspath(path)
