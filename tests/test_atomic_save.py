"""Saving never loses a table: atomic replacement, failures injected into the write path, a
SIGKILL at random moments of a save, and saving over the file a table is memory-mapped from."""

from __future__ import annotations

import errno
import os
import signal
import sys
import time

import fastembed
import numpy as np
import pytest
from conftest import RUN_SLOW, assert_bitwise_equal, make_table
from fastembed import _atomic

FORMATS = ["t.npz", "t.npy"]
LAYERS = [fastembed.Embedding, fastembed.EmbeddingBag]


def files_in(directory) -> dict[str, bytes]:
    """Every file in ``directory`` with its content: what a failed save must leave as it was."""
    return {name: (directory / name).read_bytes() for name in sorted(os.listdir(directory))}


def saved_pair(tmp_path, name, rng, dtype=np.float32):
    """``(old, new)`` layers of different shapes and options, ``old`` saved at ``name``."""
    old = fastembed.Embedding(weight=make_table(40, 6, dtype, rng), max_norm=30.0, sparse=True)
    new = fastembed.Embedding(weight=make_table(55, 6, dtype, rng), padding_idx=2)
    old.save(tmp_path / name)
    return old, new


def assert_same_table(loaded, layer) -> None:
    assert type(loaded) is type(layer)
    assert_bitwise_equal(np.asarray(loaded.weight), np.asarray(layer.weight))
    assert loaded._options() == layer._options()


# --- atomic_write itself ---------------------------------------------------------------------


def test_atomic_write_replaces_and_keeps_the_mode(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")
    os.chmod(path, 0o640)
    with _atomic.atomic_write(path, "w", encoding="utf-8") as file:
        file.write("new")
        assert path.read_text() == "old"  # nothing is visible before the block ends
    assert path.read_text() == "new"
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert os.listdir(tmp_path) == ["f.txt"]


def test_atomic_write_of_a_new_file_follows_the_umask(tmp_path):
    umask = os.umask(0o027)
    try:
        with _atomic.atomic_write(tmp_path / "new.bin") as file:
            file.write(b"x")
    finally:
        os.umask(umask)
    assert os.stat(tmp_path / "new.bin").st_mode & 0o777 == 0o640


def test_atomic_write_through_a_symlink_replaces_its_target(tmp_path):
    (tmp_path / "real.bin").write_bytes(b"old")
    os.symlink("real.bin", tmp_path / "link.bin")
    with _atomic.atomic_write(tmp_path / "link.bin") as file:
        file.write(b"new")
    assert os.path.islink(tmp_path / "link.bin")
    assert (tmp_path / "real.bin").read_bytes() == b"new"


def test_an_exception_in_the_block_leaves_the_old_file_and_no_temporary(tmp_path):
    (tmp_path / "f.bin").write_bytes(b"old")
    with pytest.raises(KeyError), _atomic.atomic_write(tmp_path / "f.bin") as file:
        file.write(b"half of the new")
        raise KeyError("stop")
    assert files_in(tmp_path) == {"f.bin": b"old"}


def test_atomic_write_all_replaces_in_order_only_once_all_are_written(tmp_path, monkeypatch):
    for name in ("a", "b"):
        (tmp_path / name).write_bytes(b"old " + name.encode())
    order = []
    replace = os.replace
    monkeypatch.setattr(_atomic.os, "replace", lambda s, d: (order.append(d), replace(s, d)))
    with _atomic.atomic_write_all([tmp_path / "b", tmp_path / "a"]) as (b, a):
        a.write(b"new a")
        b.write(b"new b")
        assert order == []
    assert order == [str(tmp_path / "b"), str(tmp_path / "a")]
    assert files_in(tmp_path) == {"a": b"new a", "b": b"new b"}


# --- failed saves ----------------------------------------------------------------------------


def _failing(name: str, exception: OSError, after: int = 0):
    """A stand-in for ``name`` in fastembed._atomic.os that raises on call ``after + 1``."""
    real = getattr(os, name)
    calls = []

    def fail(*args, **kwargs):
        calls.append(args)
        if len(calls) > after:
            raise exception
        return real(*args, **kwargs)

    return fail


class _FullDisk:
    """A file whose writes fail with ENOSPC after ``room`` bytes (a disk that fills up)."""

    def __init__(self, file, room: int) -> None:
        self._file, self._room = file, room

    def write(self, data) -> int:
        size = memoryview(data).nbytes
        if size > self._room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= size
        return self._file.write(data)

    def fileno(self) -> int:
        raise OSError(errno.EBADF, "no file number: writes go through write()")

    def __getattr__(self, name):
        return getattr(self._file, name)


def _disk_with_room(room: int):
    fdopen = os.fdopen

    def opened(*args, **kwargs):
        return _FullDisk(fdopen(*args, **kwargs), room)

    return opened


INJECTED = {
    "no space while writing": ("fdopen", _disk_with_room(10_000)),
    "no space at once": ("fdopen", _disk_with_room(0)),
    "fsync fails": ("fsync", _failing("fsync", OSError(errno.EIO, "I/O error"))),
    "first rename fails": ("replace", _failing("replace", PermissionError(13, "denied"))),
    "errno-less error": ("replace", _failing("replace", OSError("no errno"))),
}


@pytest.mark.parametrize("name", FORMATS)
@pytest.mark.parametrize("failure", list(INJECTED))
@pytest.mark.parametrize("layer_class", LAYERS)
def test_a_failed_save_names_the_path_and_leaves_the_old_file(
    layer_class, failure, name, tmp_path, rng, monkeypatch
):
    old = layer_class(weight=make_table(300, 8, np.float32, rng), max_norm=2.0)
    old.save(tmp_path / name)
    before = files_in(tmp_path)
    new = layer_class(weight=make_table(500, 8, np.float32, rng))
    function, replacement = INJECTED[failure]
    monkeypatch.setattr(_atomic.os, function, replacement)
    with pytest.raises(OSError, match="cannot save .*" + name):
        new.save(tmp_path / name)
    monkeypatch.undo()
    assert files_in(tmp_path) == before
    assert_same_table(layer_class.load(tmp_path / name), old)


def test_a_failure_between_the_npy_and_json_renames_is_detected(tmp_path, rng, monkeypatch):
    old, new = saved_pair(tmp_path, "t.npy", rng)
    monkeypatch.setattr(_atomic.os, "replace", _failing("replace", OSError(5, "EIO"), after=1))
    with pytest.raises(OSError, match="t.npy.json"):
        new.save(tmp_path / "t.npy")
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["t.npy", "t.npy.json"]
    with pytest.raises(ValueError, match="t.npy and .*t.npy.json are out of step"):
        fastembed.Embedding.load(tmp_path / "t.npy")


@pytest.mark.parametrize("name", FORMATS)
def test_a_temporary_file_that_cannot_be_created_names_the_path(name, tmp_path, monkeypatch):
    emb = fastembed.Embedding(5, 2, seed=0)
    monkeypatch.setattr(
        _atomic.tempfile, "mkstemp", _failing("open", PermissionError(13, "Permission denied"))
    )
    with pytest.raises(PermissionError, match=f"cannot save .*{name}: Permission denied"):
        emb.save(tmp_path / name)
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_directory(tmp_path):
    os.chmod(tmp_path, 0o500)
    try:
        with pytest.raises(PermissionError, match="t.npz"):
            fastembed.Embedding(5, 2).save(tmp_path / "t.npz")
    finally:
        os.chmod(tmp_path, 0o700)


def test_a_read_only_file_system():
    """/sys is mounted read-only: even root cannot create a file in it."""
    if not os.path.isdir("/sys/kernel"):
        pytest.skip("no /sys here")
    try:
        with pytest.raises(OSError, match="/sys/kernel/t.npz"):
            fastembed.Embedding(5, 2).save("/sys/kernel/t.npz")
    finally:
        assert not os.path.exists("/sys/kernel/t.npz")


@pytest.mark.parametrize(
    "where",
    ["under a file", "missing directory", "a directory"],
)
def test_bad_paths_raise_oserror_naming_them(where, tmp_path):
    (tmp_path / "file").write_bytes(b"x")
    (tmp_path / "dir").mkdir()
    path = {
        "under a file": tmp_path / "file" / "t.npz",
        "missing directory": tmp_path / "missing" / "t.npz",
        "a directory": tmp_path / "dir",
    }[where]
    before = files_in(tmp_path / "dir")
    with pytest.raises(OSError, match=f"cannot save {path}"):
        fastembed.Embedding(5, 2).save(path)
    assert files_in(tmp_path / "dir") == before
    assert sorted(os.listdir(tmp_path)) == ["dir", "file"]


@pytest.mark.parametrize("name", FORMATS)
def test_a_non_serialisable_option_is_a_value_error_before_anything_is_written(name, tmp_path):
    emb = fastembed.Embedding(5, 2, seed=0)
    emb.save(tmp_path / name)
    before = files_in(tmp_path)
    emb.max_norm = object()
    with pytest.raises(ValueError, match=f"cannot save .*{name}: max_norm="):
        emb.save(tmp_path / name)
    assert files_in(tmp_path) == before


def test_a_checkpoint_cannot_be_a_npy_file(tmp_path):
    emb = fastembed.Embedding(5, 2, seed=0)
    with pytest.raises(ValueError, match="t.npy.*one .npz archive"):
        emb.save(tmp_path / "t.npy", optimizer=fastembed.optim.SGD(lr=0.1))
    assert os.listdir(tmp_path) == []


# --- a SIGKILL at random moments of a save ---------------------------------------------------


def _save_in_a_child(layer, path) -> int:
    pid = os.fork()
    if pid == 0:  # the child saves and leaves without running anything of pytest's
        code = 1
        try:
            layer.save(path)
            code = 0
        finally:
            os._exit(code)
    return pid


def load_either(path):
    """The layer saved at ``path``, whichever of the two classes saved it."""
    try:
        return fastembed.Embedding.load(path)
    except ValueError as error:
        if "holds an EmbeddingBag" not in str(error):
            raise
    return fastembed.EmbeddingBag.load(path)


@pytest.mark.parametrize("name", FORMATS)
def test_a_save_killed_at_a_random_moment_leaves_the_old_or_the_new_table(name, tmp_path, rng):
    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    trials = 400 if RUN_SLOW else 20
    path = tmp_path / name
    tables = [
        fastembed.Embedding(weight=make_table(10_000, 32, np.float32, rng), max_norm=4.0),
        fastembed.EmbeddingBag(weight=make_table(12_000, 32, np.float32, rng), mode="sum"),
    ]
    start = time.perf_counter()
    for table in tables:
        table.save(path)
    duration = (time.perf_counter() - start) / 2
    outcomes = {"old": 0, "new": 0, "out of step": 0, "killed while writing": 0}
    current = 1  # the table the file holds
    for trial in range(trials):
        old, new = tables[current], tables[1 - current]
        pid = _save_in_a_child(new, path)
        # Stratified: the kills spread over the whole save and a little past its end.
        time.sleep(1.3 * duration * (trial + rng.random()) / trials)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        leftovers = [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
        outcomes["killed while writing"] += bool(leftovers)
        for leftover in leftovers:
            os.unlink(tmp_path / leftover)
        try:
            loaded = load_either(path)
        except ValueError as error:
            # Only a .npy pair, killed between its two renames, can be out of step.
            assert name.endswith(".npy") and "out of step" in str(error), str(error)
            outcomes["out of step"] += 1
            new.save(path)
            current = 1 - current
            continue
        outcome = "old" if type(loaded) is type(old) else "new"
        assert_same_table(loaded, old if outcome == "old" else new)
        outcomes[outcome] += 1
        current = current if outcome == "old" else 1 - current
    assert outcomes["killed while writing"] > 0, f"no kill landed during a save: {outcomes}"
    print(outcomes, file=sys.stderr)


# --- saving over a memory-mapped source ------------------------------------------------------


@pytest.mark.parametrize("layer_class", LAYERS)
@pytest.mark.parametrize("name", FORMATS)
@pytest.mark.parametrize("mmap_mode", ["r", "c"])
def test_saving_a_mapped_table_over_its_own_file(mmap_mode, name, layer_class, tmp_path, rng):
    original = layer_class(weight=make_table(3_000, 16, np.float32, rng), max_norm=5.0)
    path = tmp_path / name
    original.save(path)
    mapped = layer_class.load(path, mmap_mode=mmap_mode)
    old_view = mapped.weight
    if mmap_mode == "c":
        mapped.weight[7] += 1  # a fine-tuned copy-on-write table, saved back to its file
    expected = np.array(mapped.weight)
    mapped.max_norm = 6.0
    mapped.save(path)
    # The old map stays valid: it reads the replaced file, which the replace kept alive.
    assert_bitwise_equal(np.array(old_view), expected)
    assert old_view.sum() == expected.sum()
    again = layer_class.load(path)
    assert_bitwise_equal(again.weight, expected)
    assert again.max_norm == 6.0
    assert sorted(os.listdir(tmp_path)) == [name] + [name + ".json"] * name.endswith(".npy")


@pytest.mark.parametrize("name", FORMATS)
@pytest.mark.parametrize("mmap_mode", ["r", "c"])
def test_saving_another_table_over_a_mapped_file(mmap_mode, name, tmp_path, rng):
    old, new = saved_pair(tmp_path, name, rng)
    mapped = fastembed.Embedding.load(tmp_path / name, mmap_mode=mmap_mode)
    new.save(tmp_path / name)
    assert_bitwise_equal(np.array(mapped.weight), old.weight)  # the old file, still mapped
    ids = np.array([0, 39, 5])
    assert_bitwise_equal(mapped(ids), old.weight[ids])
    assert_same_table(fastembed.Embedding.load(tmp_path / name), new)


@pytest.mark.parametrize("layer_class", LAYERS)
def test_saving_a_table_trained_in_place_in_its_file(layer_class, tmp_path, rng):
    path = tmp_path / "t.npy"
    layer_class(weight=make_table(1_000, 8, np.float64, rng)).save(path)
    live = layer_class.load(path, mmap_mode="r+")
    inode = os.stat(path).st_ino
    opt = fastembed.optim.SGD(lr=0.5)
    ids = np.array([3, 3, 999])
    out = live(ids) if layer_class is fastembed.Embedding else live(ids, offsets=[0, 2])
    live.backward(np.ones_like(out), optimizer=opt)  # written into the mapped file
    live.trainable = False
    expected = np.array(live.weight)
    live.save(path)
    assert os.stat(path).st_ino == inode  # the table's file itself, not a copy
    assert isinstance(live.weight, np.memmap) and live.weight.mode == "r+"
    again = layer_class.load(path)
    assert_bitwise_equal(again.weight, expected)
    assert again.trainable is False
    live.weight[0] = 42  # the layer still writes to the live file
    live.weight.flush()
    assert np.load(path)[0, 0] == 42
    assert sorted(os.listdir(tmp_path)) == ["t.npy", "t.npy.json"]


def test_a_part_of_a_table_mapped_r_plus_is_not_saved_over_its_file(tmp_path, rng):
    path = tmp_path / "t.npy"
    fastembed.Embedding(weight=make_table(10, 4, np.float32, rng)).save(path)
    before = files_in(tmp_path)
    part = fastembed.Embedding(weight=np.load(path, mmap_mode="r+")[2:5])
    with pytest.raises(ValueError, match="a part of an array mapped 'r\\+'"):
        part.save(path)
    assert files_in(tmp_path) == before


# --- .npy + .json pairs ----------------------------------------------------------------------


def test_the_side_file_records_the_npy_it_belongs_to(tmp_path, rng):
    old, new = saved_pair(tmp_path, "t.npy", rng)
    new.save(tmp_path / "u.npy")
    # A crash between the two renames: the new table beside the old options.
    os.replace(tmp_path / "u.npy", tmp_path / "t.npy")
    with pytest.raises(ValueError, match=f"{tmp_path / 't.npy'} and {tmp_path / 't.npy.json'}"):
        fastembed.Embedding.load(tmp_path / "t.npy")


def test_a_plain_numpy_npy_without_side_file_loads(tmp_path, rng):
    table = make_table(10, 3, np.float64, rng)
    np.save(tmp_path / "plain.npy", table)
    for layer_class in LAYERS:
        assert_bitwise_equal(layer_class.load(tmp_path / "plain.npy").weight, table)


def test_a_side_file_written_by_hand_needs_no_checksum(tmp_path, rng):
    np.save(tmp_path / "t.npy", make_table(10, 3, np.float32, rng))
    (tmp_path / "t.npy.json").write_text('{"padding_idx": 0, "sparse": true}')
    emb = fastembed.Embedding.load(tmp_path / "t.npy")
    assert emb.padding_idx == 0 and emb.sparse


@pytest.mark.parametrize("name", FORMATS)
def test_numpy_writer_failing_names_the_path(name, tmp_path, rng, monkeypatch):
    old, new = saved_pair(tmp_path, name, rng)
    before = files_in(tmp_path)

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "save", full_disk)
    monkeypatch.setattr(np.lib.format, "write_array", full_disk)  # each .npz member's writer
    with pytest.raises(OSError, match=f"cannot save .*{name}.*No space left"):
        new.save(tmp_path / name)
    monkeypatch.undo()
    assert files_in(tmp_path) == before


def test_a_table_mapped_r_plus_from_a_file_since_replaced_is_saved_as_a_copy(tmp_path, rng):
    path = tmp_path / "t.npy"
    fastembed.Embedding(weight=make_table(20, 4, np.float32, rng)).save(path)
    live = fastembed.Embedding.load(path, mmap_mode="r+")
    fastembed.Embedding(weight=make_table(20, 4, np.float32, rng)).save(path)  # renamed over it
    live.weight[1] = 7  # written to the replaced file, which only the map still holds
    live.save(path)
    assert_bitwise_equal(fastembed.Embedding.load(path).weight, np.asarray(live.weight))
