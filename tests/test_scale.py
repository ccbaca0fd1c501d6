"""Scale: index arithmetic is 64-bit everywhere.

A table with more than 2**31 elements costs almost nothing as a sparse file-backed np.memmap:
only the pages written or read take memory or disk. Tests that need gigabytes of real memory or
disk are marked ``slow`` (run them with FASTEMBED_RUN_SLOW=1) and skip themselves when the
machine has too little.
"""

from __future__ import annotations

import mmap
import os
import shutil
from pathlib import Path

import fastembed
import numpy as np
import pytest

DIM = 64
BIG_ROWS = 2**31 // DIM + 1_000  # (BIG_ROWS, 64) has 2**31 + 64_000 elements
FIRST_ROW_BEYOND_2_31 = 2**31 // DIM  # its first element is element 2**31

# Rows to write and read: on both sides of element 2**31, the very last row, and a few more.
PROBE_ROWS = np.array(
    [0, 1, FIRST_ROW_BEYOND_2_31 - 1, FIRST_ROW_BEYOND_2_31, FIRST_ROW_BEYOND_2_31 + 1,
     FIRST_ROW_BEYOND_2_31 + 777, BIG_ROWS - 2, BIG_ROWS - 1, 2**24 + 3],
    dtype=np.int64,
)  # fmt: skip


def probe_row(row: int) -> np.ndarray:
    """A distinctive value pattern for each row, exact in float32."""
    return (row % 100_003) + np.arange(DIM, dtype=np.float32) / 64


def available_memory() -> int:
    """Bytes of memory available to a new allocation (Linux), else 0 (unknown: skip)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@pytest.fixture
def big_table(tmp_path: Path) -> np.memmap:
    """A (BIG_ROWS, 64) float32 memmap over a sparse file; the probe rows hold probe_row()."""
    path = tmp_path / "table.f32"
    table = np.memmap(path, dtype=np.float32, mode="w+", shape=(BIG_ROWS, DIM))
    if os.stat(path).st_blocks * 512 > 64 << 20:
        pytest.skip("the file system does not support sparse files")
    # Each page fault would otherwise read ahead up to read_ahead_kb (megabytes) of holes.
    if hasattr(mmap, "MADV_RANDOM") and hasattr(table, "_mmap"):
        table._mmap.madvise(mmap.MADV_RANDOM)
    for row in PROBE_ROWS:
        table[row] = probe_row(int(row))
    return table


@pytest.mark.parametrize("id_dtype", [np.int32, np.int64])
def test_gather_beyond_element_2_31_of_a_memmap_table(big_table, id_dtype):
    assert big_table.size > 2**31
    rng = np.random.default_rng(5)
    ids = np.concatenate([PROBE_ROWS[::-1], PROBE_ROWS, rng.integers(0, BIG_ROWS, 300)])
    rng.shuffle(ids)
    ids = ids.astype(id_dtype).reshape(-1, 2)
    got = fastembed.gather(big_table, ids)
    assert got.shape == (*ids.shape, DIM)
    for position, row in np.ndenumerate(ids):
        expected = probe_row(int(row)) if row in PROBE_ROWS else np.zeros(DIM, np.float32)
        assert np.array_equal(got[position], expected), f"row {row} at ids{position}"


def test_embedding_on_a_memmap_table_beyond_element_2_31(big_table):
    layer = fastembed.Embedding(weight=big_table)
    assert layer.weight is big_table
    got = layer(PROBE_ROWS)
    for row, values in zip(PROBE_ROWS, got):
        assert np.array_equal(values, probe_row(int(row)))


def test_id_just_past_a_big_table_is_an_index_error(big_table):
    with pytest.raises(IndexError, match=f"id {BIG_ROWS} at ids\\[1\\]"):
        fastembed.gather(big_table, np.array([BIG_ROWS - 1, BIG_ROWS]))


@pytest.mark.slow
def test_scatter_add_into_a_memmap_gradient_beyond_element_2_31(tmp_path: Path):
    """The dense gradient is written in full: about 8.6 GB of disk."""
    needed = BIG_ROWS * DIM * 4
    if shutil.disk_usage(tmp_path).free < needed + (4 << 30):
        pytest.skip(f"needs {needed / 2**30:.1f} GiB of free disk")
    out = np.memmap(tmp_path / "grad.f32", dtype=np.float32, mode="w+", shape=(BIG_ROWS, DIM))
    ids = np.concatenate([PROBE_ROWS, PROBE_ROWS[-3:]])  # the last rows twice
    grad = np.stack([probe_row(int(row)) for row in ids])
    fastembed.scatter_add(grad, ids, BIG_ROWS, out=out)
    for row in PROBE_ROWS:
        times = np.count_nonzero(ids == row)
        assert np.array_equal(out[row], times * probe_row(int(row))), f"row {row}"
    for row in [2, FIRST_ROW_BEYOND_2_31 + 2, BIG_ROWS - 3]:
        assert not out[row].any()


@pytest.mark.slow
def test_batch_with_more_than_2_31_output_elements():
    """gather into 2**31 + 64_000 output elements, then scatter_add back from them (about 9 GB
    of memory)."""
    n = BIG_ROWS
    if available_memory() < n * DIM * 4 + n * 4 + (2 << 30):
        pytest.skip(f"needs {(n * DIM * 4 + n * 4) / 2**30:.1f} GiB of available memory")
    num_embeddings = 1_000
    rng = np.random.default_rng(9)
    weight = rng.integers(-8, 9, (num_embeddings, DIM)).astype(np.float32)  # exact sums
    ids = rng.integers(0, num_embeddings, n, dtype=np.int32)
    rows = fastembed.gather(weight, ids)
    assert rows.size > 2**31
    chunk = 1 << 22
    for begin in range(0, n, chunk):
        assert np.array_equal(rows[begin : begin + chunk], weight[ids[begin : begin + chunk]]), (
            begin
        )
    # Every row of `rows` is its id's table row, so each id's gradient is count * that row.
    grad = fastembed.scatter_add(rows, ids, num_embeddings)
    del rows
    counts = np.bincount(ids, minlength=num_embeddings).astype(np.float64)
    assert np.array_equal(grad, counts[:, None] * weight)
