"""File helpers shared by ``fastnn.save``, checkpoints and the data set writers."""
import contextlib
import os
import tempfile


def _default_mode():
    """The permission bits ``open(path, "w")`` would give a new file (0o666 minus umask)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_write(path):
    """Write a file so that readers see either the old or the complete new contents.

    Yields a binary file object on a temporary file in the target's folder. When
    the ``with`` block ends normally the data is flushed and ``fsync``-ed, then the
    temporary file is renamed onto ``path`` with ``os.replace`` (atomic on POSIX
    and Windows). On any exception, ``KeyboardInterrupt`` included, the temporary
    file is removed and an existing file at ``path`` is left untouched.

    Args:
        path: target file (str or ``os.PathLike``); its folder must exist.

    Example:
        >>> with atomic_write("weights.bin") as f:  # doctest: +SKIP
        ...     f.write(data)
    """
    target = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"atomic_write: folder {folder!r} does not exist (writing {target!r})")
    mode = os.stat(target).st_mode & 0o7777 if os.path.exists(target) else _default_mode()
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(target) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_folder(folder)


def _fsync_folder(folder):
    """Make the rename durable where the platform allows opening a folder (POSIX)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
