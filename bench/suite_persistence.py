"""Issue 11's benchmark: what atomic saves cost (a temporary file, fsync, rename) next to the
plain NumPy writes that truncate the file in place, and loading a saved table (read or
memory-mapped) next to np.load."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any, Callable

import fastembed
import numpy as np
from harness import Context, short_count

HEADLINE_SECONDS = 10
FULL_SECONDS = 130
PEERS = ("torch",)

SAVE_NPZ = "Embedding.save .npz (atomic, fsync)"
SAVEZ = "np.savez (in place, no fsync)"
SAVEZ_FSYNC = "np.savez + fsync (in place)"
SAVE_NPY = "Embedding.save .npy + .json (atomic, fsync)"
NP_SAVE = "np.save (in place, no fsync)"
NP_SAVE_FSYNC = "np.save + fsync (in place)"
TORCH_SAVE = "torch.save (in place, no fsync)"

LOAD_NPZ = "Embedding.load .npz"
NP_LOAD_NPZ = "np.load(.npz)['weight']"
LOAD_NPY = "Embedding.load .npy"
NP_LOAD_NPY = "np.load(.npy)"
MAP_NPZ = "Embedding.load .npz mmap_mode='r'"
MAP_NPY = "Embedding.load .npy mmap_mode='r'"
NP_MAP_NPY = "np.load(.npy, mmap_mode='r')"


@dataclass(frozen=True)
class Case:
    num_embeddings: int
    dim: int

    @property
    def name(self) -> str:
        megabytes = self.num_embeddings * self.dim * 4 >> 20
        return f"V={short_count(self.num_embeddings)} D={self.dim} ({megabytes} MiB)"


def cases(ctx: Context) -> list[Case]:
    """The headline is a 64 MiB table; the full run adds 256 MiB."""
    if ctx.quick:
        return [Case(10_000, 64)]
    headline = Case(250_000, 64)
    return [headline] if ctx.headline else [headline, Case(1_000_000, 64)]


def run(ctx: Context) -> None:
    print(
        f"persistence suite, {ctx.threads} thread(s) (saving and loading do not use the "
        "kernels' threads): float32 tables of standard-normal values, written to and read from "
        "a temporary directory on this machine's disk; every save replaces the file of the "
        "previous one. GB/s counts the table's bytes once. Loads read from the page cache (the "
        "file was just written); a mapped load reads nothing until the table is used, so its GB/s "
        "only sets its time beside the read.\n",
        flush=True,
    )
    directory = tempfile.mkdtemp(prefix="fastembed-bench-")
    try:
        for case, rng in ctx.with_rngs(cases(ctx)):
            if not ctx.wants(case.name):
                continue
            table = rng.standard_normal((case.num_embeddings, case.dim), dtype=np.float32)
            emb = fastembed.Embedding(weight=table)
            bench_saves(ctx, case, emb, directory)
            if not ctx.headline:
                bench_loads(ctx, case, emb, directory)
            for name in os.listdir(directory):
                os.unlink(os.path.join(directory, name))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def bench_saves(ctx: Context, case: Case, emb: fastembed.Embedding, directory: str) -> None:
    def at(name: str) -> str:
        return os.path.join(directory, name)

    def fsynced(save: Callable[..., None], name: str) -> Callable[[], None]:
        def write() -> None:
            with open(at(name), "wb") as file:
                save(file, emb.weight)
                file.flush()
                os.fsync(file.fileno())

        return write

    repeats = 3 if ctx.headline else 5
    npz: dict[str, Callable[[], object]] = {
        SAVE_NPZ: lambda: emb.save(at("t.npz")),
        SAVEZ: lambda: np.savez(at("plain.npz"), weight=emb.weight),
        SAVEZ_FSYNC: fsynced(lambda file, table: np.savez(file, weight=table), "fsync.npz"),
    }
    torch: Any = ctx.torch
    if torch is not None:
        tensor = torch.from_numpy(emb.weight)
        npz[TORCH_SAVE] = lambda: torch.save(tensor, at("t.pt"))
    ctx.compare(case.name, "save", npz, emb.weight.nbytes, repeats=repeats)
    if not ctx.headline:
        npy: dict[str, Callable[[], object]] = {
            SAVE_NPY: lambda: emb.save(at("t.npy")),
            NP_SAVE: lambda: np.save(at("plain.npy"), emb.weight),
            NP_SAVE_FSYNC: fsynced(np.save, "fsync.npy"),
        }
        ctx.compare(case.name, "save .npy", npy, emb.weight.nbytes, repeats=repeats)


def bench_loads(ctx: Context, case: Case, emb: fastembed.Embedding, directory: str) -> None:
    def at(name: str) -> str:
        return os.path.join(directory, name)

    emb.save(at("t.npz"))
    emb.save(at("t.npy"))
    np.savez(at("plain.npz"), weight=emb.weight)
    for path in ("t.npz", "t.npy"):
        if not np.array_equal(fastembed.Embedding.load(at(path)).weight, emb.weight):
            raise AssertionError(f"{path} did not load back the saved table on {case.name}")

    def np_load_npz() -> np.ndarray:
        with np.load(at("plain.npz")) as archive:
            return archive["weight"]

    nbytes = emb.weight.nbytes
    loads: dict[str, Callable[[], object]] = {
        LOAD_NPZ: lambda: fastembed.Embedding.load(at("t.npz")),
        NP_LOAD_NPZ: np_load_npz,
        LOAD_NPY: lambda: fastembed.Embedding.load(at("t.npy")),
        NP_LOAD_NPY: lambda: np.load(at("t.npy")),
    }
    ctx.compare(case.name, "load", loads, nbytes)
    maps: dict[str, Callable[[], object]] = {
        MAP_NPZ: lambda: fastembed.Embedding.load(at("t.npz"), mmap_mode="r"),
        MAP_NPY: lambda: fastembed.Embedding.load(at("t.npy"), mmap_mode="r"),
        NP_MAP_NPY: lambda: np.load(at("t.npy"), mmap_mode="r"),
    }
    ctx.compare(case.name, "memory-mapped load", maps, nbytes)
