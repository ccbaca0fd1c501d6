"""Arrays off their dtype's alignment: saved archives map aligned, foreign archives whose members
are not are read into memory, and the kernels copy unaligned inputs or refuse unaligned tables
(reading them through typed pointers is undefined behaviour, which UBSan reports)."""

from __future__ import annotations

import io
import zipfile

import fastembed
import numpy as np
import pytest
from conftest import assert_bitwise_equal, make_table
from fastembed._aligned_npz import ALIGNMENT, write_aligned_npz

DTYPES = [np.float32, np.float64, np.float16, np.int64, np.uint8]


def unaligned(array: np.ndarray) -> np.ndarray:
    """A copy of ``array`` one byte past an aligned address (C-contiguous, not aligned)."""
    raw = np.zeros(array.nbytes + 2 * array.itemsize, dtype=np.uint8)
    start = -raw.ctypes.data % array.itemsize + 1
    copy = raw[start : start + array.nbytes].view(array.dtype).reshape(array.shape)
    copy[...] = array
    assert copy.flags.c_contiguous and not copy.flags.aligned
    return copy


def member_data_offsets(data: bytes) -> dict[str, int]:
    """Where each member's array data starts in the archive ``data``, from its zip and .npy
    headers (read independently of fastembed)."""
    offsets = {}
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            local = info.header_offset
            name_length = int.from_bytes(data[local + 26 : local + 28], "little")
            extra_length = int.from_bytes(data[local + 28 : local + 30], "little")
            npy = local + 30 + name_length + extra_length
            assert data[npy : npy + 6] == b"\x93NUMPY"
            major = data[npy + 6]
            width = 2 if major == 1 else 4
            header_length = int.from_bytes(data[npy + 8 : npy + 8 + width], "little")
            offsets[info.filename] = npy + 8 + width + header_length
    return offsets


@pytest.mark.parametrize("lead", range(0, 70, 7))  # where the archive starts in the file
def test_every_member_of_an_aligned_npz_starts_on_a_64_byte_boundary(lead, rng):
    arrays = {
        "w": make_table(7, 3, np.float64, rng),
        "a_longer_member_name": rng.standard_normal(5).astype(np.float32),
        "b": np.arange(3, dtype=np.uint8),  # an odd-sized member before the next
        "c": np.float64(2.5),
        "text": np.array("json {}"),
        "empty": np.zeros((0, 4)),
    }
    file = io.BytesIO()
    file.write(b"x" * lead)  # the alignment is measured from the start of the file
    archive_start = file.tell()
    write_aligned_npz(file, arrays)
    data = file.getvalue()
    offsets = member_data_offsets(data[archive_start:])
    assert set(offsets) == {name + ".npy" for name in arrays}
    for name, offset in offsets.items():
        assert (archive_start + offset) % ALIGNMENT == 0, name
    with np.load(io.BytesIO(data[archive_start:])) as loaded:
        for name, array in arrays.items():
            assert_bitwise_equal(loaded[name], array)
    with zipfile.ZipFile(io.BytesIO(data[archive_start:])) as archive:
        assert archive.testzip() is None  # every CRC right


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_saved_tables_and_checkpoints_map_aligned(dtype, tmp_path, rng):
    emb = fastembed.Embedding(weight=make_table(33, 5, dtype, rng), max_norm=1.0)
    emb.save(tmp_path / "t.npz")
    loaded = fastembed.Embedding.load(tmp_path / "t.npz", mmap_mode="r")
    assert isinstance(loaded.weight, np.memmap)
    assert loaded.weight.ctypes.data % ALIGNMENT == 0
    assert loaded.weight.offset % ALIGNMENT == 0


def savez_with_unaligned_weight(path, weight: np.ndarray) -> None:
    """An archive np.savez writes in which the weight member's data is off its alignment."""
    for pad in range(1, 64):
        np.savez(path, a=np.zeros(pad, dtype=np.uint8), weight=weight)
        offset = member_data_offsets(path.read_bytes())["weight.npy"]
        if offset % weight.dtype.itemsize:
            return
    raise AssertionError("np.savez aligned every member: no unaligned case to test")


@pytest.mark.parametrize("mmap_mode", ["r", "c"])
def test_an_unaligned_member_of_a_foreign_archive_is_read_into_memory(mmap_mode, tmp_path, rng):
    weight = make_table(40, 6, np.float64, rng)
    path = tmp_path / "foreign.npz"
    savez_with_unaligned_weight(path, weight)
    loaded = fastembed.Embedding.load(path, mmap_mode=mmap_mode)
    assert loaded.weight.flags.aligned
    assert loaded.weight.flags.writeable == (mmap_mode == "c")
    assert_bitwise_equal(np.asarray(loaded.weight), weight)
    if mmap_mode == "c":  # the max_norm lookup renormalises the copy, never the file
        ids = np.array([0, 7, 39])
        rows = fastembed.gather(loaded.weight, ids, max_norm=1.0)
        expected = weight[ids] * np.minimum(1.0, 1.0 / np.linalg.norm(weight[ids], axis=1))[:, None]
        np.testing.assert_allclose(rows, expected, rtol=1e-6)
        with np.load(path) as archive:
            assert_bitwise_equal(archive["weight"], weight)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unaligned_inputs_are_read_through_an_aligned_copy(dtype, rng):
    weight = make_table(20, 4, dtype, rng)
    ids = np.array([[3, 19, 0], [3, 3, 7]], dtype=np.int64)
    grad = rng.standard_normal((2, 3, 4)).astype(dtype)
    assert_bitwise_equal(fastembed.gather(weight, unaligned(ids)), weight[ids])
    expected = np.zeros_like(weight)
    np.add.at(expected, ids, grad)
    got = fastembed.scatter_add(unaligned(grad), unaligned(ids), 20)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_an_unaligned_table_is_refused_with_a_clear_error(rng):
    weight = unaligned(make_table(20, 4, np.float64, rng))
    before = weight.copy()
    with pytest.raises(ValueError, match="aligned"):
        fastembed.gather(weight, np.array([1, 2]))
    with pytest.raises(ValueError, match="aligned"):
        fastembed.gather(weight, np.array([1, 2]), max_norm=0.1)
    assert_bitwise_equal(weight, before)


@pytest.mark.parametrize("init", ["uniform", "normal", "xavier_uniform", "callable"])
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_drawn_tables_start_on_a_cache_line_with_numpys_numbers(init, dtype):
    """Tables fastembed draws start on a 64-byte line (NumPy's start 16 bytes past one); the
    numbers are NumPy's allocating draw's, rounded once to a narrower dtype."""
    shape = (300, 24)

    def fill(shape, rng):
        return rng.standard_normal(shape) * 3

    scheme = fill if init == "callable" else init
    layer = fastembed.Embedding(*shape, init=scheme, dtype=dtype, seed=5)
    assert layer.weight.ctypes.data % 64 == 0
    assert layer.weight.flags.c_contiguous and layer.weight.flags.writeable
    wide = np.float64 if dtype == "float64" else np.float32
    rng = np.random.default_rng(5)
    if init == "callable":
        drawn = fill(shape, rng).astype(wide)
    elif init == "normal":
        drawn = rng.standard_normal(shape, dtype=wide)
    else:
        limit = 0.05 if init == "uniform" else np.sqrt(6.0 / sum(shape))
        drawn = rng.random(shape, dtype=wide) * wide(2 * limit) - wide(limit)
    assert_bitwise_equal(layer.weight, drawn.astype(dtype))
    bag = fastembed.EmbeddingBag(*shape, dtype=dtype, seed=5)  # the layer's default init
    assert bag.weight.ctypes.data % 64 == 0
    assert_bitwise_equal(bag.weight, fastembed.Embedding(*shape, dtype=dtype, seed=5).weight)


def test_sharded_tables_start_on_a_cache_line(tmp_path):
    """Drawn, copied from a NumPy table 16 bytes past a line, and loaded from a checkpoint
    under another shard count: every shard's table starts on a line."""
    from fastembed.distributed import ShardedEmbedding

    with ShardedEmbedding(1000, 24, num_shards=3, seed=2) as table:
        assert all(t.ctypes.data % 64 == 0 for t in table._engine.tables())
    raw = np.empty(1000 * 64 + 16, np.float32)
    start = (16 - raw.ctypes.data % 64) % 64 // 4
    weight = raw[start : start + 1000 * 64].reshape(1000, 64)
    weight[...] = np.random.default_rng(3).standard_normal(weight.shape, dtype=np.float32)
    assert weight.ctypes.data % 64 == 16
    for placement in ("range", "modulo"):
        with ShardedEmbedding.from_embedding(weight, 4, placement=placement) as table:
            assert all(t.ctypes.data % 64 == 0 for t in table._engine.tables())
            np.testing.assert_array_equal(table.forward(np.arange(1000)), weight)
            table.save(tmp_path / placement)
        with ShardedEmbedding.load(tmp_path / placement, num_shards=3) as loaded:
            assert all(t.ctypes.data % 64 == 0 for t in loaded._engine.tables())
            np.testing.assert_array_equal(loaded.forward(np.arange(1000)), weight)
