"""Atomic file replacement: every file fastembed writes goes through :func:`atomic_write`.

The new content is written to a temporary file in the target's directory, flushed and fsynced,
then ``os.replace``d over the target, and the directory is fsynced: at every instant the path
holds either the old complete file or the new complete file, whatever crashes, fills up or is
killed in between. A reader that still has the old file open (or memory-mapped) keeps reading
the old bytes: the replace gives the path a new inode and leaves the old one alive until its last
user drops it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import IO, Any


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", **open_args: Any) -> Iterator[IO]:
    """Opens a temporary file that replaces ``path`` when the ``with`` block ends without error.

    Parameters
    ----------
    path : str or os.PathLike
        The file to create or replace.
    mode : str
        ``"wb"`` (default) or ``"w"``; ``open_args`` (such as ``encoding``) go to ``open``.

    Raises
    ------
    OSError
        If the temporary file cannot be created, written or moved into place (the message names
        ``path``). The temporary file is removed and ``path`` is left as it was; an exception
        raised inside the block propagates the same way.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write mode must be 'wb' or 'w', got {mode!r}")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, temporary = tempfile.mkstemp(
            dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp"
        )
    except OSError as error:
        raise _naming(error, path) from error
    try:
        with os.fdopen(fd, mode, **open_args) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        _keep_mode_of(path, temporary)
        os.replace(temporary, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(error, OSError):
            raise _naming(error, path) from error
        raise
    _fsync_directory(directory)


def _keep_mode_of(path: str, temporary: str) -> None:
    """Gives the new file the permission bits of the one it replaces (mkstemp makes 0600)."""
    try:
        os.chmod(temporary, os.stat(path).st_mode & 0o7777)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)


def _fsync_directory(directory: str) -> None:
    """Makes the rename itself durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _naming(error: OSError, path: str) -> OSError:
    """The same kind of OSError, with a message that names the target path."""
    if path in str(error):
        return error
    return type(error)(error.errno, f"cannot save {path}: {error.strerror or error}")
