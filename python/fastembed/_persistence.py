"""Saving a table with its layer options, and loading it back, memory-mapped if asked.

Formats, chosen by the file name:

* ``*.npy``: the table as a plain ``.npy`` file (readable by ``np.load``), and the options in a
  JSON side file ``<name>.npy.json``. ``np.load`` memory-maps ``.npy`` directly.
* anything else (``*.npz`` by convention): one uncompressed ``.npz`` archive, exactly as
  ``np.savez`` writes it, with members ``weight.npy`` and ``config.npy`` (the options as a JSON
  string). ``np.load`` cannot memory-map a member of an archive, but an uncompressed ("stored")
  member is the ``.npy`` bytes verbatim at a fixed offset in the file: :func:`load_table` finds
  that offset from the member's local zip header and ``np.memmap``s the data after its ``.npy``
  header. Only read-only (``"r"``) and copy-on-write (``"c"``) maps are offered for archives:
  writing through ``"r+"`` would leave the member's CRC stale.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from typing import Any

import numpy as np

FORMAT_VERSION = 1
_WEIGHT = "weight"  # stored as the member weight.npy
_CONFIG = "config"
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")  # zip local file header, 30 bytes
_LOCAL_HEADER_SIGNATURE = b"PK\x03\x04"
_MMAP_MODES = (None, "r", "r+", "c")


def save_table(path: str | os.PathLike, weight: np.ndarray, config: dict[str, Any]) -> None:
    """Writes ``weight`` and ``config`` (JSON-serialisable) to ``path`` (format by suffix)."""
    path = os.fspath(path)
    text = json.dumps({"format_version": FORMAT_VERSION, **config})
    table = np.asarray(weight)  # a np.memmap is written as its data
    if path.endswith(".npy"):
        np.save(path, table, allow_pickle=False)
        with open(path + ".json", "w", encoding="utf-8") as side:
            side.write(text)
        return
    with open(path, "wb") as file:  # a file object: np.savez then appends no suffix
        np.savez(file, **{_WEIGHT: table, _CONFIG: np.array(text)})


def load_table(path: str | os.PathLike, mmap_mode: str | None) -> tuple[np.ndarray, dict[str, Any]]:
    """The table and the options saved by :func:`save_table` (``{}`` for a bare ``.npy``)."""
    if mmap_mode not in _MMAP_MODES:
        raise ValueError(f"mmap_mode must be one of {_MMAP_MODES}, got {mmap_mode!r}")
    path = os.fspath(path)
    if path.endswith(".npy"):
        weight = np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
        config: dict[str, Any] = {}
        if os.path.exists(path + ".json"):
            with open(path + ".json", encoding="utf-8") as side:
                config = json.load(side)
        return weight, _checked_config(config, path)
    with np.load(path, allow_pickle=False) as archive:
        if _WEIGHT not in archive.files:
            raise ValueError(f"{path} has no {_WEIGHT}.npy member: not saved by Embedding.save")
        config = json.loads(str(archive[_CONFIG])) if _CONFIG in archive.files else {}
        weight = archive[_WEIGHT] if mmap_mode is None else None
    if weight is None:
        weight = _map_member(path, _WEIGHT + ".npy", mmap_mode)
    return weight, _checked_config(config, path)


def _checked_config(config: dict[str, Any], path: str) -> dict[str, Any]:
    version = config.pop("format_version", FORMAT_VERSION)
    if version > FORMAT_VERSION:
        raise ValueError(f"{path} was saved by a newer fastembed (format {version})")
    return config


def _map_member(path: str, member: str, mmap_mode: str) -> np.memmap:
    """``np.memmap`` of the array stored uncompressed as ``member`` of the archive at ``path``."""
    if mmap_mode == "r+":
        raise ValueError(
            "mmap_mode='r+' is not supported for .npz archives (the member's checksum would go "
            "stale); use 'r' or 'c', or save as .npy"
        )
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    if info.compress_type != zipfile.ZIP_STORED:
        raise ValueError(
            f"{member} in {path} is compressed and cannot be memory-mapped; "
            "save with Embedding.save (np.savez, not np.savez_compressed)"
        )
    with open(path, "rb") as file:
        file.seek(info.header_offset)
        fields = _LOCAL_HEADER.unpack(file.read(_LOCAL_HEADER.size))
        if fields[0] != _LOCAL_HEADER_SIGNATURE:
            raise ValueError(f"{path}: corrupt zip header for {member}")
        name_length, extra_length = fields[9], fields[10]
        file.seek(info.header_offset + _LOCAL_HEADER.size + name_length + extra_length)
        version = np.lib.format.read_magic(file)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(file)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(file)
        else:
            raise ValueError(f"{member} in {path} has .npy format {version}, expected 1.0 or 2.0")
        offset = file.tell()
    if 0 in shape:  # nothing to map (mmap refuses empty ranges)
        return np.zeros(shape, dtype=dtype, order="F" if fortran_order else "C")
    return np.memmap(
        path,
        dtype=dtype,
        mode=mmap_mode,
        offset=offset,
        shape=shape,
        order="F" if fortran_order else "C",
    )
