"""Writing an uncompressed ``.npz`` archive whose members' data can be memory-mapped aligned.

``np.savez`` stores each member's ``.npy`` bytes verbatim ("stored", no compression), but it
starts each member wherever the previous one ended, so the data of a map of that member lands
at any byte offset: a float64 table at an address that is 4 mod 8, which the kernels may not
read through typed pointers. This writer pads each member's local zip header with an extra
field (id 0xD935, the one Android's zipalign gives its padding) so that every member's data
starts at a multiple of :data:`ALIGNMENT` bytes in the file; ``.npy`` headers are themselves
padded to 64 bytes, so the header start and the data start align together. The result is an
ordinary zip archive: ``np.load`` and ``zipfile`` read it, and ignore the padding field.
"""

from __future__ import annotations

import struct
import time
import zipfile
from collections.abc import Mapping
from typing import IO

import numpy as np

ALIGNMENT = 64  # a cache line, and more than any dtype needs
_PADDING_FIELD_ID = 0xD935
_FIELD_HEADER = struct.Struct("<HH")  # an extra field's id and the size of its data
_LOCAL_HEADER_BYTES = 30  # a local file header's fixed part, before its name and extra fields
# force_zip64 (which np.savez sets too) gives every local header a zip64 field: the field
# header and the two 8-byte sizes the zip specification requires there.
_ZIP64_FIELD_BYTES = _FIELD_HEADER.size + 16


def write_aligned_npz(file: IO[bytes], arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` to the seekable binary ``file`` as the members ``<name>.npy`` of an
    uncompressed ``.npz`` archive, each member's data at a multiple of :data:`ALIGNMENT` bytes
    from the start of the file (which must be where ``file`` is positioned)."""
    with zipfile.ZipFile(file, mode="w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            member = zipfile.ZipInfo(name + ".npy", date_time=time.localtime()[:6])
            member.compress_type = zipfile.ZIP_STORED
            header_bytes = _LOCAL_HEADER_BYTES + len(member.filename.encode()) + _ZIP64_FIELD_BYTES
            member.extra = _padding_field(-(file.tell() + header_bytes) % ALIGNMENT)
            with archive.open(member, mode="w", force_zip64=True) as stream:
                np.lib.format.write_array(stream, np.asanyarray(array), allow_pickle=False)


def _padding_field(gap: int) -> bytes:
    """An extra field ``gap`` bytes long (``gap + ALIGNMENT`` when the field's own 4-byte
    header does not fit in ``gap``), or nothing for no gap."""
    if gap == 0:
        return b""
    if gap < _FIELD_HEADER.size:
        gap += ALIGNMENT
    return _FIELD_HEADER.pack(_PADDING_FIELD_ID, gap - _FIELD_HEADER.size) + bytes(
        gap - _FIELD_HEADER.size
    )
