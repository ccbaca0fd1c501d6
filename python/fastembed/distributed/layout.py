"""Where each row of a row-sharded table lives: the placement arithmetic and the routing call.

The arithmetic here mirrors ``RangePlacement`` and ``ModuloPlacement`` in
``src/kernels/route.hpp``; the routing of a batch of ids is that kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import _core

PLACEMENTS = ("range", "modulo")


@dataclass(frozen=True)
class Layout:
    """``num_embeddings`` rows on ``num_shards`` shards.

    ``"range"``: shard ``s`` holds the contiguous rows ``[s * r, (s + 1) * r)`` with
    ``r = ceil(num_embeddings / num_shards)`` (the last shards may hold fewer, or none).
    ``"modulo"``: shard ``s`` holds the rows ``s, s + num_shards, s + 2 * num_shards, ...``, which
    spreads frequent ids (usually the small ones) over every shard.
    """

    num_embeddings: int
    num_shards: int
    placement: str

    @property
    def rows_per_shard(self) -> int:
        """Rows of the fullest shard (the stride of a range placement)."""
        return max(1, -(-self.num_embeddings // self.num_shards))

    def rows(self, shard: int) -> range:
        """The global row ids shard ``shard`` holds, in its own row order."""
        if self.placement == "modulo":
            return range(shard, self.num_embeddings, self.num_shards)
        start = min(self.num_embeddings, shard * self.rows_per_shard)
        return range(start, min(self.num_embeddings, start + self.rows_per_shard))

    def owner(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(shard, row within the shard)`` of each global id (checked by the caller)."""
        divisor = self.num_shards if self.placement == "modulo" else self.rows_per_shard
        quotient, remainder = np.divmod(ids, divisor)
        return (remainder, quotient) if self.placement == "modulo" else (quotient, remainder)

    @property
    def first_rows(self) -> list[int]:
        """Where each shard's rows start when the shards' tables are laid end to end in shard
        order (``num_shards + 1`` entries, the last one ``num_embeddings``)."""
        first = [0]
        for shard in range(self.num_shards):
            first.append(first[-1] + len(self.rows(shard)))
        return first

    def concatenated(self, ids: np.ndarray) -> np.ndarray:
        """The ids renamed to their rows in the shards' tables laid end to end (local row ``r``
        of shard ``s`` is ``first_rows[s] + r``), a new array of the same shape and dtype. A
        bijection of ``[0, num_embeddings)`` that keeps each shard's row order (the identity
        for ``"range"``): a gradient reduced over these ids has the same sums and comes out
        grouped by shard. An id out of range raises ``IndexError`` first.
        """
        return _core.concatenated_rows(
            ids, self.num_embeddings, self.num_shards, self.placement == "modulo"
        )

    def distinct(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(local, offsets, inverse)``: the distinct ids (int32 or int64, any shape,
        C-contiguous) bucketed by shard in C++ (bitmaps of the table's rows, or a radix sort of
        the renamed ids where the table has over 32 rows per id).
        Shard ``s`` gets ``local[offsets[s]:offsets[s + 1]]``, its own rows, each once, in
        increasing order; the id at flat position ``i`` is the one at slot ``inverse[i]``. An
        id out of range raises ``IndexError`` naming it and its position, before anything else
        happens.
        """
        return _core.route_distinct(
            ids, self.num_embeddings, self.num_shards, self.placement == "modulo"
        )

    def assemble(self, tables: list[np.ndarray]) -> np.ndarray:
        """The whole table from the shards' tables (a new array)."""
        dim = tables[0].shape[1]
        whole = np.empty((self.num_embeddings, dim), dtype=tables[0].dtype)
        for shard, table in enumerate(tables):
            rows = self.rows(shard)
            whole[rows.start : rows.stop : rows.step] = table
        return whole
