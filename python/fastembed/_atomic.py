"""Atomic file replacement: every file fastembed writes goes through :func:`atomic_write`.

The new content is written to a temporary file in the target's directory, flushed and fsynced,
then ``os.replace``d over the target, and the directory is fsynced: at every instant the path
holds either the old complete file or the new complete file, whatever crashes, fills up or is
killed in between. A reader that still has the old file open (or memory-mapped) keeps reading
the old bytes: the replace gives the path a new inode and leaves the old one alive until its last
user drops it. Nothing here ever opens a target for writing, so no file is truncated in place.

:func:`atomic_write_all` does the same for files that belong together (a ``.npy`` table and its
``.json`` side file): all are written and fsynced before the first replace, and they are
replaced in the order given, so a failure while writing leaves every target as it was, and only
a crash between two renames can leave them out of step (the last one records what it expects
of the others).

A process killed (SIGKILL, power loss) mid-write leaves its temporary file behind: a hidden
``.<name>.<random>.tmp`` beside the target, which a later save does not touch (another process
may be writing it).
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator, Sequence
from typing import IO, Any


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", **open_args: Any) -> Iterator[IO]:
    """Opens a temporary file that replaces ``path`` when the ``with`` block ends without error.

    Parameters
    ----------
    path : str or os.PathLike
        The file to create or replace (a symbolic link: the file it points to).
    mode : str
        ``"wb"`` (default) or ``"w"``; ``open_args`` (such as ``encoding``) go to ``open``.

    Raises
    ------
    OSError
        If the temporary file cannot be created, written or moved into place (the message names
        ``path``). The temporary file is removed and ``path`` is left as it was; an exception
        raised inside the block propagates the same way.
    """
    with atomic_write_all([path], mode, **open_args) as (file,):
        yield file


@contextlib.contextmanager
def atomic_write_all(
    paths: Sequence[str | os.PathLike], mode: str = "wb", **open_args: Any
) -> Iterator[list[IO]]:
    """:func:`atomic_write` for several files at once: one temporary file per path, all written
    and fsynced before any is moved into place, then replaced in the order of ``paths``.

    An error before the first replace (in the block, or while flushing) leaves every path as it
    was and removes every temporary file; an ``OSError`` names the paths.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write mode must be 'wb' or 'w', got {mode!r}")
    targets = [_target(path) for path in paths]
    for target in targets:
        if os.path.isdir(target):  # found now, not after the whole file has been written
            raise IsADirectoryError(errno.EISDIR, f"cannot save {target}: it is a directory")
    naming = " and ".join(targets)  # an error inside the block may concern any of them
    staged: list[tuple[str, str, IO]] = []  # (target, temporary, open file)
    replaced = 0
    try:
        for target in targets:
            naming = target
            staged.append((target, *_open_temporary(target, mode, open_args)))
        naming = " and ".join(targets)
        yield [file for _, _, file in staged]
        for target, temporary, file in staged:
            naming = target
            file.flush()
            os.fsync(file.fileno())
            file.close()
            _keep_mode_of(target, temporary)
        for target, temporary, _ in staged:
            naming = target
            os.replace(temporary, target)
            replaced += 1
    except BaseException as error:
        for _, temporary, file in staged[replaced:]:
            with contextlib.suppress(OSError):
                file.close()
            with contextlib.suppress(OSError):
                os.unlink(temporary)
        if isinstance(error, OSError):
            raise _naming(error, naming) from error
        raise
    for directory in dict.fromkeys(os.path.dirname(target) for target in targets):
        _fsync_directory(directory)


def _target(path: str | os.PathLike) -> str:
    """The absolute file a write to ``path`` replaces: a symbolic link's target, not the link."""
    path = os.path.abspath(os.fspath(path))
    return os.path.realpath(path) if os.path.islink(path) else path


def _open_temporary(target: str, mode: str, open_args: dict[str, Any]) -> tuple[str, IO]:
    directory, name = os.path.split(target)
    fd, temporary = tempfile.mkstemp(dir=directory, prefix="." + name + ".", suffix=".tmp")
    try:
        return temporary, os.fdopen(fd, mode, **open_args)
    except BaseException:
        os.close(fd)
        os.unlink(temporary)
        raise


def _keep_mode_of(path: str, temporary: str) -> None:
    """Gives the new file the permission bits of the one it replaces (mkstemp makes 0600)."""
    try:
        os.chmod(temporary, os.stat(path).st_mode & 0o7777)
    except FileNotFoundError:
        os.chmod(temporary, 0o666 & ~_umask())


def _umask() -> int:
    """The process' umask, read without changing it where Linux shows it (os.umask can only
    set it, and a moment with another umask would affect files other threads create)."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


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
    message = f"cannot save {path}: {error.strerror or error}"
    arguments = (message,) if error.errno is None else (error.errno, message)
    try:
        return type(error)(*arguments)
    except TypeError:  # a subclass with another constructor
        return OSError(*arguments)
