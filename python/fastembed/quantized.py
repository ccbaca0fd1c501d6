"""Row-wise quantized tables (8-bit and 4-bit) in FBGEMM's byte layout.

Each row is stored as its codes plus a scale and a bias (the row's minimum), element ``d`` being
``code[d] * scale + bias`` rounded once to float32 (a fused multiply-add, as in FBGEMM's kernels;
the same bits on every CPU):

* 8-bit: ``D`` code bytes, then float32 scale and float32 bias: ``D + 8`` bytes per row.
* 4-bit: ``D / 2`` bytes holding two codes each (the even column in the low nibble), then
  float16 scale and float16 bias: ``D / 2 + 4`` bytes per row (``D`` must be even).

This is exactly what PyTorch's ``torch.ops.quantized.embedding_bag_byte_prepack`` and
``embedding_bag_4bit_prepack`` produce (the same bytes for the same table), so a table packed by
either side is read by the other as it is. Lookups (:func:`fastembed.gather`,
:func:`fastembed.embedding_bag`) dequantize rows in registers and return float32.
"""

from __future__ import annotations

import operator
import os
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from . import _core
from ._checks import require_array
from ._ids import as_ids

BITS = (8, 4)


def _bits(bits: object) -> int:
    if isinstance(bits, (bool, np.bool_)):
        raise TypeError(f"bits must be 8 or 4, got {bits!r}")
    try:
        value = operator.index(bits)
    except TypeError:
        raise TypeError(f"bits must be 8 or 4, got {bits!r}") from None
    if value not in BITS:
        raise ValueError(f"bits must be 8 or 4, got {value}")
    return value


class QuantizedTable:
    """A ``(num_embeddings, embedding_dim)`` table stored row-wise quantized (see the module).

    Made by :func:`fastembed.quantize` or :meth:`from_fbgemm`; read-only. Use it wherever a
    table is looked up: ``gather(q, ids)``, ``embedding_bag(q, ids, offsets, mode=...)``,
    ``Embedding.from_pretrained(q)``, ``EmbeddingBag.from_pretrained(q)`` (frozen layers).

    Attributes
    ----------
    packed : ndarray of uint8, shape (num_embeddings, row bytes)
        The rows in FBGEMM's layout (the very array given to :meth:`from_fbgemm`).
    bits : int
        8 or 4.
    num_embeddings, embedding_dim : int
    nbytes : int
        Bytes of ``packed``.
    """

    __slots__ = ("packed", "bits", "embedding_dim")

    def __init__(self, packed: np.ndarray, bits: int, embedding_dim: int) -> None:
        # Private: use fastembed.quantize or QuantizedTable.from_fbgemm, which check the bytes.
        self.packed: np.ndarray = packed
        self.bits: int = bits
        self.embedding_dim: int = embedding_dim

    @classmethod
    def from_fbgemm(
        cls, packed: Any, bits: int, *, embedding_dim: int | None = None
    ) -> QuantizedTable:
        """Wrap a table packed in FBGEMM's layout, without copying it.

        Parameters
        ----------
        packed : ndarray of uint8, shape (num_embeddings, row bytes)
            E.g. ``torch.ops.quantized.embedding_bag_byte_prepack(w).numpy()`` (bits=8) or
            ``embedding_bag_4bit_prepack(w).numpy()`` (bits=4); C-contiguous. A CPU tensor is
            taken through ``np.asarray`` (sharing its memory).
        bits : {8, 4}
        embedding_dim : int, optional
            Checked against the width when given (the width alone implies it: ``width - 8``
            for 8-bit, ``2 * (width - 4)`` for 4-bit).

        Raises
        ------
        TypeError
            ``packed`` is not uint8; ``bits`` is not an int.
        ValueError
            ``bits`` is not 8 or 4; ``packed`` is not 2-d or C-contiguous, or its width is too
            small for the scale and bias, or does not match ``embedding_dim``.
        """
        bits = _bits(bits)
        if not isinstance(packed, np.ndarray):
            packed = np.asarray(packed)
        dim = _core.packed_dim(packed, bits)
        if embedding_dim is not None and embedding_dim != dim:
            raise ValueError(
                f"packed rows of {packed.shape[1]} bytes hold embedding_dim={dim} at {bits} bits, "
                f"not embedding_dim={embedding_dim}"
            )
        return cls(packed, bits, dim)

    @property
    def num_embeddings(self) -> int:
        return self.packed.shape[0]

    @property
    def shape(self) -> tuple[int, int]:
        """``(num_embeddings, embedding_dim)``: the shape of the table it stands for."""
        return (self.num_embeddings, self.embedding_dim)

    @property
    def dtype(self) -> np.dtype:
        """float32: what its rows dequantize to (and lookups return)."""
        return np.dtype(np.float32)

    @property
    def nbytes(self) -> int:
        return self.packed.nbytes

    def dequantize(self, ids: ArrayLike | None = None, out: np.ndarray | None = None) -> np.ndarray:
        """The float32 table, or with ``ids`` its rows ``ids`` (shape ``ids.shape + (D,)``, as
        :func:`fastembed.gather`), each element ``code * scale + bias`` rounded once."""
        if out is not None:
            require_array(out, "out")
        return _core.dequantize(self.packed, self.bits, None if ids is None else as_ids(ids), out)

    # --- persistence ---------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write the packed rows and ``bits`` to ``path`` (``.npy`` + JSON side file, or an
        ``.npz`` archive, as :meth:`fastembed.Embedding.save`)."""
        from ._persistence import save_table

        save_table(path, self.packed, {"quantized_bits": self.bits})

    @classmethod
    def load(cls, path: str | os.PathLike, mmap_mode: str | None = None) -> QuantizedTable:
        """A table written by :meth:`save`; ``mmap_mode`` as for
        :meth:`fastembed.Embedding.load`."""
        from ._persistence import load_table

        packed, config, _ = load_table(path, mmap_mode)
        bits = config.pop("quantized_bits", None)
        if bits is None or config:
            raise ValueError(f"{os.fspath(path)} does not hold a QuantizedTable")
        return cls.from_fbgemm(packed, bits)

    def __repr__(self) -> str:
        return (
            f"QuantizedTable(num_embeddings={self.num_embeddings}, "
            f"embedding_dim={self.embedding_dim}, bits={self.bits}, nbytes={self.nbytes})"
        )

    def __getstate__(self) -> dict[str, Any]:
        return {"packed": np.asarray(self.packed), "bits": self.bits}

    def __setstate__(self, state: dict[str, Any]) -> None:
        table = QuantizedTable.from_fbgemm(state["packed"], state["bits"])
        self.packed, self.bits, self.embedding_dim = table.packed, table.bits, table.embedding_dim


def quantize(weight: np.ndarray, bits: int = 8) -> QuantizedTable:
    """Quantize a table row-wise to 8 or 4 bits, in FBGEMM's layout and rounding.

    Parameters
    ----------
    weight : ndarray of shape (num_embeddings, embedding_dim)
        float32 (float64, float16 and bfloat16 tables are converted to float32 first).
    bits : {8, 4}, default 8
        4-bit needs an even ``embedding_dim``, as FBGEMM.

    Returns
    -------
    QuantizedTable
        Byte-identical to PyTorch's ``embedding_bag_byte_prepack`` (8) /
        ``embedding_bag_4bit_prepack`` (4) of the same table. Every element dequantizes to within
        half a quantum (``scale / 2``) of its value, plus 1e-8 for 8-bit (FBGEMM computes the
        codes with ``255 / (max - min + 1e-8)``) and the float16 rounding of the bias for
        4-bit.

    Raises
    ------
    TypeError
        ``weight`` is not a floating table; ``bits`` not an int.
    ValueError
        ``bits`` not 8 or 4; ``weight`` not 2-d; an odd ``embedding_dim`` with 4 bits; a NaN or
        infinity in ``weight`` (named by its index).

    Examples
    --------
    >>> q = quantize(np.array([[0.0, 1.0, 0.5]], np.float32), bits=8)
    >>> q.packed.shape, q.dequantize()[0, 2].round(3)
    ((1, 11), 0.502)
    """
    bits = _bits(bits)
    require_array(weight, "weight")
    from ._dtypes import is_table_dtype

    if not is_table_dtype(weight.dtype):
        raise TypeError(f"weight must be a floating table, got {weight.dtype}")
    if weight.ndim != 2:
        raise ValueError(f"weight must be 2-d (num_embeddings, embedding_dim), got {weight.shape}")
    table = np.ascontiguousarray(weight, dtype=np.float32)
    return QuantizedTable(_core.quantize(table, bits), bits, weight.shape[1])
