"""Saving and loading a layer (.npz and .npy, memory-mapped or not), pickling, and repr."""

from __future__ import annotations

import math
import pickle
import zipfile

import fastembed
import numpy as np
import pytest
from conftest import WEIGHT_DTYPES, assert_bitwise_equal, make_grad, make_table

OPTIONS = {
    "padding_idx": 3,
    "max_norm": 2.5,
    "norm_type": math.inf,
    "scale_grad_by_freq": True,
    "sparse": True,
    "mask_zero": True,
    "trainable": False,
}


def layer_with_options(dtype, rng) -> fastembed.Embedding:
    return fastembed.Embedding(weight=make_table(50, 6, dtype, rng), **OPTIONS)


def assert_same_layer(loaded: fastembed.Embedding, original: fastembed.Embedding) -> None:
    assert_bitwise_equal(np.asarray(loaded.weight), np.asarray(original.weight))
    for name, value in OPTIONS.items():
        assert getattr(loaded, name) == value, name


@pytest.mark.parametrize("dtype", WEIGHT_DTYPES)
@pytest.mark.parametrize("name", ["table.npz", "table.npy", "table.bin"])
@pytest.mark.parametrize("mmap_mode", [None, "r", "c"])
def test_save_and_load_round_trip(dtype, name, mmap_mode, tmp_path, rng):
    emb = layer_with_options(dtype, rng)
    path = tmp_path / name
    emb.save(path)
    assert path.exists()  # written at exactly this path, no suffix appended
    loaded = fastembed.Embedding.load(path, mmap_mode=mmap_mode)
    assert_same_layer(loaded, emb)
    if mmap_mode is not None:
        assert isinstance(loaded.weight, np.memmap)
        assert loaded.weight.flags.writeable == (mmap_mode == "c")


def test_npz_is_a_plain_uncompressed_numpy_archive(tmp_path, rng):
    emb = layer_with_options(np.float32, rng)
    emb.save(tmp_path / "t.npz")
    with zipfile.ZipFile(tmp_path / "t.npz") as archive:
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_STORED}
    with np.load(tmp_path / "t.npz") as archive:
        assert_bitwise_equal(archive["weight"], emb.weight)


def test_npy_is_readable_by_numpy_and_options_sit_beside_it(tmp_path, rng):
    emb = layer_with_options(np.float64, rng)
    emb.save(tmp_path / "t.npy")
    assert_bitwise_equal(np.load(tmp_path / "t.npy"), emb.weight)
    assert (tmp_path / "t.npy.json").exists()


def test_bare_npy_loads_with_default_options(tmp_path, rng):
    table = make_table(10, 3, np.float32, rng)
    np.save(tmp_path / "bare.npy", table)
    emb = fastembed.Embedding.load(tmp_path / "bare.npy", mmap_mode="r")
    assert_bitwise_equal(np.asarray(emb.weight), table)
    assert emb.trainable and emb.padding_idx is None and not emb.sparse


def test_memory_mapped_npz_reads_the_file_not_a_copy(tmp_path, rng):
    emb = fastembed.Embedding(weight=make_table(1_000, 16, np.float32, rng))
    path = tmp_path / "t.npz"
    emb.save(path)
    loaded = fastembed.Embedding.load(path, mmap_mode="r")
    assert loaded.weight.filename == str(path)
    # The map covers exactly the weight's bytes inside the archive.
    raw = path.read_bytes()
    start = loaded.weight.offset
    assert raw[start : start + emb.weight.nbytes] == emb.weight.tobytes()
    ids = np.array([[5, 999], [0, 5]])
    assert_bitwise_equal(loaded(ids), emb.weight[ids])


def test_npy_r_plus_writes_through_to_the_file(tmp_path, rng):
    emb = fastembed.Embedding(weight=make_table(20, 4, np.float32, rng), max_norm=0.5)
    emb.save(tmp_path / "t.npy")
    loaded = fastembed.Embedding.load(tmp_path / "t.npy", mmap_mode="r+")
    loaded([1, 2])  # renormalises rows 1 and 2 in the file
    loaded.weight.flush()
    on_disk = np.load(tmp_path / "t.npy")
    assert np.linalg.norm(on_disk[[1, 2]], axis=1).max() <= 0.5 * (1 + 1e-6)


def test_npz_r_plus_is_refused(tmp_path, rng):
    fastembed.Embedding(4, 2, seed=0).save(tmp_path / "t.npz")
    with pytest.raises(ValueError, match="r\\+"):
        fastembed.Embedding.load(tmp_path / "t.npz", mmap_mode="r+")


def test_compressed_npz_loads_but_cannot_be_mapped(tmp_path, rng):
    np.savez_compressed(tmp_path / "z.npz", weight=make_table(5, 2, np.float32, rng))
    assert fastembed.Embedding.load(tmp_path / "z.npz").num_embeddings == 5
    with pytest.raises(ValueError, match="compressed"):
        fastembed.Embedding.load(tmp_path / "z.npz", mmap_mode="r")


def test_load_errors(tmp_path):
    np.savez(tmp_path / "other.npz", something=np.zeros(3))
    with pytest.raises(ValueError, match="weight"):
        fastembed.Embedding.load(tmp_path / "other.npz")
    with pytest.raises(ValueError, match="mmap_mode"):
        fastembed.Embedding.load(tmp_path / "other.npz", mmap_mode="w")


def test_empty_table_round_trips_mapped(tmp_path):
    fastembed.Embedding(0, 4).save(tmp_path / "e.npz")
    assert fastembed.Embedding.load(tmp_path / "e.npz", mmap_mode="r").weight.shape == (0, 4)


def test_saving_a_memmap_table(tmp_path, rng):
    table = np.memmap(tmp_path / "w.f4", dtype=np.float32, mode="w+", shape=(30, 3))
    table[:] = make_table(30, 3, np.float32, rng)
    fastembed.Embedding(weight=table).save(tmp_path / "t.npz")
    assert_bitwise_equal(np.asarray(fastembed.Embedding.load(tmp_path / "t.npz").weight), table)


# --- pickle ----------------------------------------------------------------------------------


@pytest.mark.parametrize("sparse", [False, True])
def test_pickle_round_trip_keeps_table_options_and_state(sparse, rng):
    emb = fastembed.Embedding(40, 5, padding_idx=1, max_norm=3.0, sparse=sparse, seed=2)
    ids = rng.integers(0, 40, 12)
    emb(ids)
    emb.backward(make_grad((12,), 5, np.float32, rng))
    again = pickle.loads(pickle.dumps(emb))
    assert_bitwise_equal(again.weight, emb.weight)
    assert again.padding_idx == 1 and again.max_norm == 3.0 and again.sparse == sparse
    assert_bitwise_equal(np.asarray(again.grad), np.asarray(emb.grad))
    # the restored layer goes on accumulating from where it was
    grad = make_grad((12,), 5, np.float32, rng)
    np.testing.assert_allclose(
        np.asarray(again.backward(grad)), np.asarray(emb.backward(grad)), rtol=1e-6
    )


def test_pickle_of_a_memmap_layer_carries_the_data(tmp_path, rng):
    fastembed.Embedding(weight=make_table(8, 2, np.float32, rng)).save(tmp_path / "t.npz")
    mapped = fastembed.Embedding.load(tmp_path / "t.npz", mmap_mode="r")
    again = pickle.loads(pickle.dumps(mapped))
    assert type(again.weight) is np.ndarray
    assert_bitwise_equal(again.weight, np.asarray(mapped.weight))


# --- repr ------------------------------------------------------------------------------------


def test_repr_shows_size_dtype_and_non_default_options():
    assert repr(fastembed.Embedding(10, 3)) == "Embedding(10, 3, dtype=float32)"
    emb = fastembed.Embedding(
        10, 3, dtype=np.float64, padding_idx=-1, max_norm=1.0, norm_type=1.0, sparse=True
    )
    assert repr(emb) == (
        "Embedding(10, 3, dtype=float64, padding_idx=9, max_norm=1.0, sparse=True, norm_type=1.0)"
    )
    frozen = fastembed.Embedding.from_pretrained(np.zeros((4, 2), np.float32))
    assert repr(frozen) == "Embedding(4, 2, dtype=float32, trainable=False)"


@pytest.mark.parametrize("name", ["t.npz", "t.npy"])
@pytest.mark.parametrize("mmap_mode", [None, "r"])
def test_files_record_the_table_dtype_even_where_numpy_stores_raw_bytes(name, mmap_mode, tmp_path):
    """bfloat16 is stored by NumPy as '|V2': the recorded dtype name brings it back."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    from fastembed._persistence import load_table, save_table

    table = np.arange(12, dtype=np.float32).reshape(4, 3).astype(ml_dtypes.bfloat16)
    save_table(tmp_path / name, table, {"sparse": True})
    loaded, config, _ = load_table(tmp_path / name, mmap_mode)
    assert loaded.dtype == table.dtype and config == {"sparse": True}
    assert_bitwise_equal(np.asarray(loaded), table)
