"""Loading what is not a (complete) fastembed table: a ``ValueError`` naming the path and what is
wrong, never NumPy's "pickled data" message, never a crash; and a fuzz test of thousands of
damaged copies of saved files, run in a subprocess so that a crash fails the test."""

from __future__ import annotations

import json
import pickle

import fastembed
import numpy as np
import pytest
from conftest import RUN_SLOW, make_table, run_python

MMAP_MODES = [None, "r", "c"]


def assert_refused(path, match: str, layer_class=fastembed.Embedding, **load_args) -> None:
    for mmap_mode in MMAP_MODES:
        with pytest.raises(ValueError) as caught:
            layer_class.load(path, mmap_mode=mmap_mode, **load_args)
        message = str(caught.value)
        assert str(path) in message, message
        assert "pickled" not in message, message
        assert match in message, message


@pytest.mark.parametrize("name", ["t.npz", "t.npy", "t.pkl"])
def test_a_pickle(name, tmp_path):
    with open(tmp_path / name, "wb") as file:
        pickle.dump({"weight": np.zeros((3, 2))}, file)
    assert_refused(tmp_path / name, "looks like a pickle")


@pytest.mark.parametrize("name", ["t.npz", "t.npy"])
def test_random_bytes_and_an_empty_file(name, tmp_path, rng):
    (tmp_path / name).write_bytes(rng.bytes(3000))
    assert_refused(tmp_path / name, "neither a .npy file nor a .npz archive")
    (tmp_path / name).write_bytes(b"")
    assert_refused(tmp_path / name, "is empty")


def test_another_npz(tmp_path):
    np.savez(tmp_path / "other.npz", something=np.zeros(3))
    assert_refused(tmp_path / "other.npz", "no weight.npy member")


def test_a_numpy_file_of_python_objects(tmp_path):
    np.save(tmp_path / "o.npy", np.array([[{}, None]], dtype=object), allow_pickle=True)
    assert_refused(tmp_path / "o.npy", "holds Python objects")
    np.savez(tmp_path / "o.npz", weight=np.array([[{}, None]], dtype=object))
    assert_refused(tmp_path / "o.npz", "holds Python objects")


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.zeros((2, 3, 4), np.float32), "2-d C-order"),
        (np.asfortranarray(np.zeros((3, 4), np.float32)), "Fortran order"),
        (np.zeros((3, 4), np.int32), "does not hold a valid Embedding"),
    ],
)
@pytest.mark.parametrize("name", ["t.npy", "t.npz"])
def test_arrays_that_are_not_tables(array, match, name, tmp_path):
    if name.endswith(".npy"):
        np.save(tmp_path / name, array)
    else:
        np.savez(tmp_path / name, weight=array)
    assert_refused(tmp_path / name, match)


@pytest.mark.parametrize("name", ["t.npz", "t.npy"])
def test_a_newer_format_version(name, tmp_path):
    fastembed.Embedding(4, 2, seed=0).save(tmp_path / name)
    if name.endswith(".npy"):
        side = json.loads((tmp_path / "t.npy.json").read_text())
        side["format_version"] = 99
        (tmp_path / "t.npy.json").write_text(json.dumps(side))
    else:
        with np.load(tmp_path / name) as archive:
            members = dict(archive)
        config = json.loads(str(members["config"]))
        members["config"] = np.array(json.dumps({**config, "format_version": 99}))
        np.savez(tmp_path / name, **members)
    assert_refused(tmp_path / name, "saved by a newer fastembed (format 99)")


@pytest.mark.parametrize("name", ["t.npz", "t.npy"])
def test_truncated_files(name, tmp_path, rng):
    fastembed.Embedding(weight=make_table(50, 4, np.float32, rng)).save(tmp_path / name)
    data = (tmp_path / name).read_bytes()
    for size in (1, 6, 10, 60, len(data) // 2, len(data) - 1):
        (tmp_path / name).write_bytes(data[:size])
        assert_refused(tmp_path / name, "")


def test_a_damaged_member_fails_its_crc(tmp_path, rng):
    table = make_table(50, 4, np.float32, rng)
    fastembed.Embedding(weight=table).save(tmp_path / "t.npz")
    data = bytearray((tmp_path / "t.npz").read_bytes())
    data[data.index(table.tobytes()) + 17] ^= 0x10
    (tmp_path / "t.npz").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="t.npz is damaged .*CRC"):
        fastembed.Embedding.load(tmp_path / "t.npz")


def test_files_that_cannot_be_read_raise_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        fastembed.Embedding.load(tmp_path / "missing.npz")
    with pytest.raises(IsADirectoryError):
        fastembed.Embedding.load(tmp_path)


# --- fuzz ------------------------------------------------------------------------------------

FUZZ = r"""
import json, os, zipfile
import numpy as np
import fastembed
from fastembed.optim import Adam

directory = os.environ["FUZZ_DIRECTORY"]
window, random_cases = int(os.environ["FUZZ_WINDOW"]), int(os.environ["FUZZ_RANDOM"])
rng = np.random.default_rng(int(os.environ["FUZZ_SEED"]))
emb = fastembed.Embedding(weight=rng.standard_normal((7, 3)).astype(np.float32), padding_idx=1,
                          max_norm=9.0, sparse=True)
opt = Adam(lr=0.01)
emb(np.array([1, 2, 2]))
emb.backward(np.ones((3, 3), np.float32), optimizer=opt)
sources = {}  # name -> (bytes, the file's loaders)
def keep(name, loaders):
    with open(os.path.join(directory, name), "rb") as file:
        sources[name] = (file.read(), loaders)
emb.save(os.path.join(directory, "ckpt.npz"), optimizer=opt)
keep("ckpt.npz", [(fastembed.Embedding, {"optimizer": "adam"})])
fastembed.EmbeddingBag(5, 2, mode="max", include_last_offset=True, seed=0).save(
    os.path.join(directory, "bag.npz"))
keep("bag.npz", [(fastembed.EmbeddingBag, {})])
emb.save(os.path.join(directory, "t.npy"))
keep("t.npy", [(fastembed.Embedding, {})])
keep("t.npy.json", [(fastembed.Embedding, {})])

def structure(name, data):
    # Offsets where a file's structure changes: zip headers and records, .npy headers.
    offsets = {0, len(data)}
    for marker in (b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x07",
                   b"\x93NUMPY", b"{", b"}"):
        start = data.find(marker)
        while start >= 0:
            offsets.add(start)
            if marker == b"\x93NUMPY":
                offsets.add(start + 10 + int.from_bytes(data[start + 8:start + 10], "little"))
            start = data.find(marker, start + 1)
    if name.endswith(".npz"):
        with zipfile.ZipFile(os.path.join(directory, name)) as archive:
            for info in archive.infolist():
                local = info.header_offset
                offsets.update({local + 14, local + 18, local + 22, local + 26, local + 28,
                                local + 30, local + 30 + len(info.filename)})
    return sorted(o for o in offsets if 0 <= o <= len(data))

def mutations(name, data):
    points = structure(name, data)
    shifts = range(-window, window + 1)
    near = sorted({min(max(o + d, 0), len(data)) for o in points for d in shifts})
    for cut in near:
        yield f"cut at {cut}", data[:cut]
    for offset in near:
        if offset < len(data):
            damaged = bytearray(data)
            damaged[offset] ^= 1 << int(rng.integers(8))
            yield f"bit flip at {offset}", bytes(damaged)
    for _ in range(random_cases):
        damaged = bytearray(data)
        for _ in range(int(rng.integers(1, 4))):
            damaged[int(rng.integers(len(data)))] ^= 1 << int(rng.integers(8))
        if rng.random() < 0.3:
            damaged = damaged[:int(rng.integers(len(damaged) + 1))]
        yield "random flips", bytes(damaged)

failures, outcomes, done, files = [], {"loaded": 0, "ValueError": 0}, 0, 0
for name, (original, loaders) in sources.items():
    path = os.path.join(directory, name)
    table_path = path[:-len(".json")] if name.endswith(".json") else path
    for what, data in mutations(name, original):
        files += 1
        with open(path, "wb") as file:
            file.write(data)
        for layer_class, options in loaders:
            for mmap_mode in (None, "c"):
                load_args = dict(options)
                if "optimizer" in load_args:
                    load_args["optimizer"] = Adam(lr=0.01)
                try:
                    layer = layer_class.load(table_path, mmap_mode=mmap_mode, **load_args)
                    float(np.asarray(layer.weight, dtype=np.float64).sum())  # touch every byte
                    outcomes["loaded"] += 1
                except ValueError as error:
                    message = str(error)
                    if table_path not in message or "pickled" in message:
                        failures.append([name, what, mmap_mode, message])
                    outcomes["ValueError"] += 1
                except Exception as error:
                    failures.append([name, what, mmap_mode, f"{type(error).__name__}: {error}"])
                done += 1
    with open(path, "wb") as file:
        file.write(original)
with open(os.path.join(directory, "result.json"), "w") as file:
    json.dump({"failures": failures[:20], "count": len(failures), "files": files,
               "loads": done, **outcomes}, file)
"""


@pytest.mark.parametrize("seed", range(8) if RUN_SLOW else [0])
def test_fuzz_damaged_files_raise_only_value_errors(seed, tmp_path):
    """Cuts and bit flips at and around every structure offset (zip records and their size,
    offset and name-length fields, .npy magic and header ends, JSON braces) of a checkpoint, a
    bag table and a .npy + .json pair, then random flips; each damaged file loaded read and
    mapped. FASTEMBED_RUN_SLOW=1: 8 seeds, a wider window, 10x the random cases."""
    directory = tmp_path / "fuzz"
    directory.mkdir()
    child = run_python(
        FUZZ,
        FUZZ_DIRECTORY=str(directory),
        FUZZ_WINDOW="3" if RUN_SLOW else "1",
        FUZZ_RANDOM="1000" if RUN_SLOW else "150",
        FUZZ_SEED=str(seed),
    )
    assert child.returncode == 0, f"the loader crashed (status {child.returncode}): {child.stderr}"
    result = json.loads((directory / "result.json").read_text())
    assert result["count"] == 0, result["failures"]
    assert result["files"] >= 1_000, result
    assert result["ValueError"] > result["loads"] // 3, result  # most damage is found
    assert result["loaded"] > 0, result  # flips in the data load: nothing checks those bytes
