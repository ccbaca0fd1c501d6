"""Saving a table with its layer options (and a checkpoint's further arrays), and loading it back,
memory-mapped if asked.

Formats, chosen by the file name when saving and recognised by their first bytes when loading:

* ``*.npy``: the table as a plain ``.npy`` file (readable by ``np.load``), and the options in a
  JSON side file ``<name>.npy.json``. Both are written before either replaces its target (one
  :func:`~fastembed._atomic.atomic_write_all`); the ``.npy`` is replaced first, the ``.json``
  last, and the ``.json`` records the ``.npy``'s size and the SHA-256 of its header, so a crash
  between the two renames (a new table beside old options) is reported, not paired up.
  ``np.load`` memory-maps ``.npy`` directly.
* anything else (``*.npz`` by convention): one uncompressed ``.npz`` archive, as ``np.savez``
  writes it, with members ``weight.npy``, ``config.npy`` (the options as a JSON string) and,
  for a checkpoint, further arrays; each member's data is aligned to 64 bytes in the file
  (``fastembed._aligned_npz``). An uncompressed ("stored") member is the ``.npy`` bytes
  verbatim at a fixed offset in the file: :func:`load_table` finds that offset from the
  member's local zip header and ``np.memmap``s the data after its ``.npy`` header. A member
  whose data is not aligned to its dtype (an archive ``np.savez`` wrote) cannot be read in
  place by the kernels, so it is read into memory instead (read-only for ``"r"``). Only
  read-only (``"r"``) and copy-on-write (``"c"``) maps are offered for archives: writing
  through ``"r+"`` would leave the member's CRC stale.

Every save replaces its files (``fastembed._atomic``), never writes into them, so a table mapped
``"r"`` or ``"c"`` from the target keeps its old file alive and valid. A ``.npy`` table mapped
``"r+"`` from the target *is* that file: saving it flushes the map and rewrites the side file.

Loading checks every header against the file before NumPy allocates or maps anything: a file
that is not a fastembed table (another archive, a pickle, random bytes, empty, truncated, a
newer format) raises ``ValueError`` naming the path and what is wrong; only the ``OSError`` of
a file that cannot be opened or read passes through as it is.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import mmap
import os
import struct
import zipfile
from collections.abc import Iterator
from typing import IO, Any, NamedTuple

import numpy as np

from ._aligned_npz import write_aligned_npz
from ._atomic import atomic_write, atomic_write_all
from ._dtypes import bfloat16

FORMAT_VERSION = 1
_WEIGHT = "weight"  # stored as the member weight.npy
_CONFIG = "config"
_NPY_MAGIC = b"\x93NUMPY"
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")  # zip local file header, 30 bytes
_LOCAL_HEADER_SIGNATURE = b"PK\x03\x04"
_MMAP_MODES = (None, "r", "r+", "c")
# What a .npy side file records about its .npy, beside the options.
_SIZE_KEY = "npy_size"
_CHECKSUM_KEY = "npy_header_sha256"


class _Invalid(ValueError):
    """A file that is not a (complete) fastembed table; the message names the path."""


class _Header(NamedTuple):
    """A parsed ``.npy`` header; ``length`` counts the magic and header bytes."""

    shape: tuple[int, ...]
    fortran_order: bool
    dtype: np.dtype
    length: int

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


# --- saving ----------------------------------------------------------------------------------


def save_table(
    path: str | os.PathLike,
    weight: np.ndarray,
    config: dict[str, Any],
    arrays: dict[str, np.ndarray] | None = None,
) -> None:
    """Writes ``weight``, ``config`` (JSON-serialisable) and ``arrays`` (extra ``.npz``
    members) to ``path``, in the format its name selects. Nothing is written if ``config``
    cannot be serialised or ``arrays`` are given for a ``.npy`` path."""
    path = os.fspath(path)
    config = {"format_version": FORMAT_VERSION, "dtype": weight.dtype.name, **config}
    _check_serialisable(path, config)
    if not path.endswith(".npy"):
        members = {_WEIGHT: np.asarray(weight), _CONFIG: np.array(json.dumps(config))}
        with atomic_write(path) as file:
            write_aligned_npz(file, {**members, **(arrays or {})})
        return
    if arrays:
        raise ValueError(
            f"cannot save {path}: a checkpoint (table and optimizer state) is one .npz archive; "
            "give a path that does not end in .npy"
        )
    side = path + ".json"
    if _mapped_in_place(weight, path):
        weight.flush()
        with open(path, "rb") as file:
            header = _npy_file_header(file, path)[1]
        with atomic_write(side) as file:
            file.write(_side_text(config, header, os.path.getsize(path)))
        return
    table = np.ascontiguousarray(weight)
    header = _npy_header_bytes(table)
    with atomic_write_all([path, side]) as (npy, json_file):
        np.save(npy, table, allow_pickle=False)  # writes exactly `header`, then the data
        json_file.write(_side_text(config, header, len(header) + table.nbytes))


def _check_serialisable(path: str, config: dict[str, Any]) -> None:
    for name, value in config.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"cannot save {path}: {name}={value!r} cannot be written as JSON ({error})"
            ) from None


def _side_text(config: dict[str, Any], header: bytes, size: int) -> bytes:
    side = {**config, _SIZE_KEY: size, _CHECKSUM_KEY: hashlib.sha256(header).hexdigest()}
    return json.dumps(side).encode()


def _npy_header_bytes(table: np.ndarray) -> bytes:
    """The header ``np.save`` writes for ``table`` (version 1.0, or 2.0 when 1.0 is too small)."""
    fields = np.lib.format.header_data_from_array_1_0(table)
    buffer = io.BytesIO()
    try:
        np.lib.format.write_array_header_1_0(buffer, fields)
    except ValueError:
        buffer = io.BytesIO()
        np.lib.format.write_array_header_2_0(buffer, fields)
    return buffer.getvalue()


def _mapped_in_place(weight: np.ndarray, path: str) -> bool:
    """Whether ``weight`` is the whole table of the ``.npy`` at ``path``, mapped writeable (a
    table trained in place in its file): then the file already holds it, and replacing the
    file would cut the map off from it."""
    if not isinstance(weight, np.memmap) or weight.mode not in ("r+", "w+"):
        return False
    root = weight  # views (a dtype view, a slice) keep the memmap they come from as .base
    while isinstance(root.base, np.memmap):
        root = root.base
    try:
        if not os.path.samefile(weight.filename, path) or not _maps_the_file_at(root, path):
            return False
        with open(path, "rb") as file:
            header = _read_header(file)
    except (OSError, ValueError, TypeError):
        return False  # not a .npy now: it is replaced like any other file
    whole = (
        isinstance(root.base, mmap.mmap)
        and root.offset == header.length
        and root.nbytes == header.nbytes
        and weight.nbytes == root.nbytes
        and weight.ctypes.data == root.ctypes.data
    )
    if not whole:
        raise ValueError(
            f"cannot save {path}: the table is a part of an array mapped 'r+' from {path} itself; "
            "save it to another path"
        )
    return True


def _maps_the_file_at(root: np.memmap, path: str) -> bool:
    """Whether the file now at ``path`` is the one ``root`` maps, not another renamed over it
    since (then the map holds a replaced file's pages). Read from /proc/self/maps where there
    is one (Linux); elsewhere the name is trusted."""
    address, inode = root.ctypes.data, os.stat(path).st_ino
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                start, end = (int(bound, 16) for bound in fields[0].split("-"))
                if start <= address < end:
                    return int(fields[4]) == inode
    except (OSError, ValueError, IndexError):
        pass
    return True


# --- loading ---------------------------------------------------------------------------------


def load_table(
    path: str | os.PathLike, mmap_mode: str | None, with_arrays: bool = False
) -> tuple[np.ndarray, dict[str, Any], dict[str, np.ndarray]]:
    """The table, the options and (if ``with_arrays``) the further ``.npz`` members saved by
    :func:`save_table` (``{}`` options for a bare ``.npy`` or a foreign ``.npz``)."""
    if mmap_mode not in _MMAP_MODES:
        raise ValueError(f"mmap_mode must be one of {_MMAP_MODES}, got {mmap_mode!r}")
    path = os.fspath(path)
    with open(path, "rb") as file:  # a missing or unreadable file: its OSError as it is
        start = file.read(len(_NPY_MAGIC))
    if start.startswith(_NPY_MAGIC):
        return (*_load_npy(path, mmap_mode), {})
    if start.startswith(b"PK"):
        return _load_npz(path, mmap_mode, with_arrays)
    if not start:
        raise _Invalid(f"{path} is empty: not a fastembed table")
    if start.startswith(b"\x80"):
        raise _Invalid(f"{path} looks like a pickle: fastembed tables are .npy or .npz files")
    raise _Invalid(
        f"{path} is neither a .npy file nor a .npz archive (it starts with {start!r}): "
        "not a fastembed table"
    )


@contextlib.contextmanager
def _content_errors(path: str, *, io_errors: bool = True) -> Iterator[None]:
    """Turns whatever a damaged file makes the parsers raise into ``ValueError`` naming
    ``path``; an ``OSError`` too while ``io_errors`` (a corrupt offset can make zipfile seek
    before the start), else it passes through (the disk, not the content)."""
    try:
        yield
    except _Invalid:
        raise
    except OSError as error:
        if not io_errors:
            raise
        raise _Invalid(f"{path} is damaged or not a fastembed table: {error}") from error
    except Exception as error:
        raise _Invalid(
            f"{path} is damaged or not a fastembed table: {type(error).__name__}: {error}"
        ) from error


def _load_npy(path: str, mmap_mode: str | None) -> tuple[np.ndarray, dict[str, Any]]:
    with open(path, "rb") as file:
        header, raw = _npy_file_header(file, path)
        size = os.fstat(file.fileno()).st_size
    _table_header(header, path)
    if size != header.length + header.nbytes:
        raise _Invalid(
            f"{path} is {size} bytes, but its .npy header describes "
            f"{header.length + header.nbytes} (truncated or damaged)"
        )
    side = path + ".json"
    config: dict[str, Any] = {}
    if os.path.exists(side):
        with _content_errors(side), open(side, "rb") as file:
            config = _checked_config(json.loads(file.read()), side)
        if _SIZE_KEY in config or _CHECKSUM_KEY in config:  # absent from hand-written side files
            recorded = (config.pop(_SIZE_KEY, None), config.pop(_CHECKSUM_KEY, None))
            actual = (size, hashlib.sha256(raw).hexdigest())
            if recorded != actual:
                raise _Invalid(
                    f"{path} and {side} are out of step: {side} was written for a {recorded[0]}"
                    f"-byte table with header checksum {str(recorded[1])[:16]}, {path} is "
                    f"{size} bytes with {actual[1][:16]} (a save interrupted between the two "
                    "files?)"
                )
    dtype = _stored_dtype(header.dtype, config, path)
    with _content_errors(path, io_errors=False):
        weight = np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    return weight.view(dtype) if dtype != weight.dtype else weight, config


def _load_npz(
    path: str, mmap_mode: str | None, with_arrays: bool
) -> tuple[np.ndarray, dict[str, Any], dict[str, np.ndarray]]:
    if mmap_mode == "r+":
        raise ValueError(
            "mmap_mode='r+' is not supported for .npz archives (the member's checksum would go "
            "stale); use 'r' or 'c', or save as .npy"
        )
    size = os.path.getsize(path)
    with _content_errors(path):
        archive = zipfile.ZipFile(path)
    with archive:
        with _content_errors(path):
            members = {
                info.filename[: -len(".npy")]: info
                for info in archive.infolist()
                if info.filename.endswith(".npy")
            }
            if _WEIGHT not in members:
                raise _Invalid(
                    f"{path} has no {_WEIGHT}.npy member (it holds {sorted(archive.namelist())}): "
                    "not a table saved by fastembed"
                )
            headers = {  # a checkpoint's further members only where they are read
                name: _member_header(archive, info, size, path)
                for name, info in members.items()
                if with_arrays or name in (_WEIGHT, _CONFIG)
            }
            config: dict[str, Any] = {}
            if _CONFIG in members:
                config = _read_config_member(archive, members[_CONFIG], headers[_CONFIG], path)
            config = _checked_config(config, path)
            weight_header = _table_header(headers[_WEIGHT], path)
            dtype = _stored_dtype(weight_header.dtype, config, path)
        with _content_errors(path, io_errors=False):
            if mmap_mode is None:
                weight = _read_member(archive, members[_WEIGHT])
            else:
                weight = _map_member(path, members[_WEIGHT], weight_header, mmap_mode)
            arrays = {
                name: _read_member(archive, members[name])
                for name in headers
                if name not in (_WEIGHT, _CONFIG)
            }
    return weight.view(dtype) if dtype != weight.dtype else weight, config, arrays


def _read_header(file: IO[bytes]) -> _Header:
    version = np.lib.format.read_magic(file)
    if version == (1, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(file)
    elif version == (2, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(file)
    else:
        raise ValueError(f".npy format {version}, expected 1.0 or 2.0")
    return _Header(shape, fortran_order, dtype, file.tell())


def _npy_file_header(file: IO[bytes], path: str) -> tuple[_Header, bytes]:
    """The checked header of the ``.npy`` at the start of ``file``, and its raw bytes."""
    with _content_errors(path):
        header = _check_header(_read_header(file), path)
    file.seek(0)
    return header, file.read(header.length)


def _table_header(header: _Header, path: str) -> _Header:
    """``header``, checked to describe a table: 2-d, C order."""
    if len(header.shape) != 2 or header.fortran_order:
        raise _Invalid(
            f"{path}: the table must be a 2-d C-order array, the file holds shape "
            f"{header.shape}{' in Fortran order' if header.fortran_order else ''}"
        )
    return header


def _check_header(header: _Header, path: str) -> _Header:
    if header.dtype.hasobject:
        raise _Invalid(f"{path} holds Python objects (dtype {header.dtype}): not a fastembed table")
    return header


def _member_header(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, size: int, path: str
) -> _Header:
    """The member's ``.npy`` header, checked against the member's size and the file's."""
    if info.compress_type == zipfile.ZIP_STORED and info.header_offset + info.compress_size > size:
        raise _Invalid(f"{path} is truncated: member {info.filename} runs past the end of the file")
    with archive.open(info) as stream:
        header = _check_header(_read_header(stream), path)
    if info.file_size != header.length + header.nbytes:
        raise _Invalid(
            f"{path}: member {info.filename} is {info.file_size} bytes, but its .npy header "
            f"describes {header.length + header.nbytes} (truncated or damaged)"
        )
    return header


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    """The member's array, its CRC checked (zipfile checks it on reading the last byte)."""
    with archive.open(info) as stream:
        return np.lib.format.read_array(stream, allow_pickle=False)


def _read_config_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, header: _Header, path: str
) -> Any:
    if header.shape != () or header.dtype.kind != "U":
        raise _Invalid(f"{path}: {info.filename} is not a JSON string (dtype {header.dtype})")
    return json.loads(str(_read_member(archive, info)))


def _checked_config(config: Any, path: str) -> dict[str, Any]:
    if not isinstance(config, dict):
        raise _Invalid(f"{path}: the options are not a JSON object")
    version = config.pop("format_version", FORMAT_VERSION)
    if type(version) is not int or version < 1:
        raise _Invalid(f"{path}: format_version {version!r} is not a version number")
    if version > FORMAT_VERSION:
        raise _Invalid(
            f"{path} was saved by a newer fastembed (format {version}); this one reads format "
            f"{FORMAT_VERSION} and older"
        )
    return config


def _stored_dtype(dtype: np.dtype, config: dict[str, Any], path: str) -> np.dtype:
    """The table's dtype: the one the file records, which NumPy may have stored as raw bytes
    (``|V2`` for bfloat16, whose name ``np.dtype`` knows once ml_dtypes is imported)."""
    name = config.pop("dtype", dtype.name)
    if name == dtype.name:
        return dtype
    try:  # "bfloat16" imports ml_dtypes, which names it for NumPy
        recorded = bfloat16() if name == "bfloat16" else np.dtype(name)
    except (TypeError, ImportError):
        raise _Invalid(f"{path} holds a {name} table, a dtype NumPy does not know here") from None
    if dtype.kind != "V" or recorded.itemsize != dtype.itemsize:
        raise _Invalid(f"{path} records dtype {name}, but its table is {dtype}")
    return recorded


def _map_member(path: str, info: zipfile.ZipInfo, header: _Header, mmap_mode: str) -> np.ndarray:
    """``np.memmap`` of the array stored uncompressed as ``info`` in the archive at ``path``."""
    if info.compress_type != zipfile.ZIP_STORED:
        raise _Invalid(
            f"{info.filename} in {path} is compressed and cannot be memory-mapped; "
            "save with Embedding.save (np.savez, not np.savez_compressed)"
        )
    with open(path, "rb") as file:
        file.seek(info.header_offset)
        fields = _LOCAL_HEADER.unpack(file.read(_LOCAL_HEADER.size))
        if fields[0] != _LOCAL_HEADER_SIGNATURE:
            raise _Invalid(f"{path}: corrupt zip header for {info.filename}")
        name_length, extra_length = fields[9], fields[10]
        file.seek(info.header_offset + _LOCAL_HEADER.size + name_length + extra_length)
        if _read_header(file)[:3] != header[:3]:  # shape, order, dtype (length is absolute)
            raise _Invalid(f"{path}: the zip headers of {info.filename} disagree")
        offset = file.tell()
        size = os.fstat(file.fileno()).st_size
    if offset + header.nbytes > size:
        raise _Invalid(f"{path} is truncated: {info.filename} runs past the end of the file")
    order = "F" if header.fortran_order else "C"
    if header.nbytes == 0:  # nothing to map (mmap refuses empty ranges)
        return np.zeros(header.shape, dtype=header.dtype, order=order)
    if offset % header.dtype.alignment:  # np.savez's archives: copied, see the module text
        with open(path, "rb") as file:
            file.seek(offset)
            table = np.fromfile(file, dtype=header.dtype, count=math.prod(header.shape))
        table = table.reshape(header.shape, order=order)
        table.flags.writeable = mmap_mode != "r"
        return table
    return np.memmap(
        path, dtype=header.dtype, mode=mmap_mode, offset=offset, shape=header.shape, order=order
    )
