"""Hostile and bad input: a clear exception of the right type naming the offending value, raised
before anything is written, and never a crash.

Every case is one row of a table: a call on a fresh ``Arena`` (a table, ids, gradients, outputs
full of a sentinel, and a layer that has already done a forward and a backward), the exception
type and a regex its message must match. After the call, every array in the arena, the layer's
state included, must hold the same bytes and the layer must hold the same array objects.
New APIs add rows to the tables below (and, if they need them, fields to the arena).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import fastembed
import numpy as np
import pytest
from conftest import SENTINEL, reference_gather, reference_scatter_add

V, D = 10, 4
IDS = [[1, 2, 3], [4, 9, 0]]  # shape (2, 3): valid for the arena's tables
BAG_IDS = [1, 2, 3, 4, 9, 0]  # 1-d ids of two bags, [1, 2] and [3, 4, 9, 0]
BAG_OFFSETS = [0, 2]

# One optimizer of each kind; the arena steps each once on its Embedding and its max bag.
OPTIMIZERS: dict[str, Callable[[], fastembed.optim.SparseOptimizer]] = {
    "SGD": lambda: fastembed.optim.SGD(0.1),
    "SGD(momentum)": lambda: fastembed.optim.SGD(0.1, momentum=0.9),
    "Adagrad": lambda: fastembed.optim.Adagrad(0.1),
    "Adagrad(rowwise)": lambda: fastembed.optim.Adagrad(0.1, rowwise=True),
    "Adam": lambda: fastembed.optim.Adam(0.1),
}


@dataclass
class Arena:
    weight: np.ndarray = field(
        default_factory=lambda: np.arange(V * D, dtype=np.float32).reshape(V, D)
    )
    ids: np.ndarray = field(default_factory=lambda: np.array(IDS, dtype=np.int64))
    grad: np.ndarray = field(
        default_factory=lambda: np.linspace(-1, 1, 2 * 3 * D, dtype=np.float32).reshape(2, 3, D)
    )
    rows_out: np.ndarray = field(default_factory=lambda: np.full((2, 3, D), SENTINEL, np.float32))
    table_out: np.ndarray = field(default_factory=lambda: np.full((V, D), SENTINEL, np.float32))
    # float32 (2, 3, D) whose first bytes also hold valid int64 ids (`shared_ids`): an `out`
    # that overlaps the ids.
    shared: np.ndarray = field(default_factory=lambda: np.full((2, 3, D), SENTINEL, np.float32))
    bag_ids: np.ndarray = field(default_factory=lambda: np.array(BAG_IDS, dtype=np.int64))
    bag_offsets: np.ndarray = field(default_factory=lambda: np.array(BAG_OFFSETS, dtype=np.int64))
    bag_grad: np.ndarray = field(
        default_factory=lambda: np.linspace(-1, 1, 2 * D, dtype=np.float32).reshape(2, D)
    )
    bag_out: np.ndarray = field(default_factory=lambda: np.full((2, D), SENTINEL, np.float32))
    per_sample_weights: np.ndarray = field(
        default_factory=lambda: np.linspace(0.5, 2, len(BAG_IDS), dtype=np.float32)
    )
    layer: fastembed.Embedding = field(init=False)
    # mode="sum" with per-sample weights, and mode="max"; each has done a forward and a backward.
    bag: fastembed.EmbeddingBag = field(init=False)
    max_bag: fastembed.EmbeddingBag = field(init=False)
    optimizers: dict[str, fastembed.optim.SparseOptimizer] = field(init=False)

    def __post_init__(self) -> None:
        self.shared_ids[...] = IDS
        self.layer = fastembed.Embedding(
            weight=np.linspace(0, 1, V * D, dtype=np.float32).reshape(V, D)
        )
        self.layer([[3, 3, 1], [0, 2, 9]])
        self.layer.backward(self.grad.copy())
        self.bag = fastembed.EmbeddingBag(
            weight=np.linspace(-1, 1, V * D, dtype=np.float32).reshape(V, D), mode="sum"
        )
        self.bag([7, 7, 1, 0], [0, 1], per_sample_weights=np.float32([1, 2, 3, 4]))
        self.bag.backward(self.bag_grad.copy())
        self.max_bag = fastembed.EmbeddingBag(
            weight=np.linspace(2, -1, V * D, dtype=np.float32).reshape(V, D), mode="max"
        )
        self.max_bag([5, 1, 1, 8, 2], [0, 3])
        self.max_bag.backward(self.bag_grad.copy())
        self.optimizers = {name: make() for name, make in OPTIMIZERS.items()}
        for optimizer in self.optimizers.values():
            self.layer.backward(self.grad.copy(), optimizer=optimizer)
            self.max_bag.backward(self.bag_grad.copy(), optimizer=optimizer)

    @property
    def shared_ids(self) -> np.ndarray:
        return self.shared.reshape(-1).view(np.int64)[:6].reshape(2, 3)

    def state(self) -> dict[str, Any]:
        """Every array the arena holds (the layer's attributes included): identity and bytes."""
        arrays = {
            name: value for name, value in vars(self).items() if isinstance(value, np.ndarray)
        }
        for layer_name in ("layer", "bag", "max_bag"):
            layer = getattr(self, layer_name)
            arrays.update(
                {
                    f"{layer_name}.{name}": value
                    for name, value in vars(layer).items()
                    if isinstance(value, np.ndarray)
                }
            )
            bags = getattr(layer, "_bags", None)  # the last forward's ids, offsets, weights
            for name, value in ({} if bags is None else bags._asdict()).items():
                if isinstance(value, np.ndarray):
                    arrays[f"{layer_name}._bags.{name}"] = value
        state = {name: (id(array), array.tobytes()) for name, array in arrays.items()}
        # Optimizers: their state arrays (identity and bytes), hyper-parameters and tables.
        for name, optimizer in self.optimizers.items():
            for key, value in optimizer.state_dict().items():
                keep = id(value) if key.startswith("table") else 0  # hyper-parameters: copies
                state[f"{name}.{key}"] = (keep, value.tobytes())
            state[f"{name} tables"] = (0, repr([id(t) for t in optimizer._layers]).encode())
        return state


def grad_for(ids: Any) -> np.ndarray:
    """A gradient whose shape fits ``ids`` (whatever they are, where NumPy can tell a shape)."""
    try:
        shape = np.shape(ids)
    except ValueError:  # ragged
        shape = ()
    return np.ones((*shape, D), np.float32)


@dataclass(frozen=True)
class Hostile:
    name: str
    call: Callable[[Arena], Any]
    exception: type[BaseException]
    match: str


def _param(case: Hostile):
    return pytest.param(case, id=case.name)


# --- ids: each bad id given to every call that takes ids ---------------------------------------

BAD_IDS = [
    # (name, ids, exception, match)
    (
        "at exactly V",
        [[1, 2, 3], [4, 10, 0]],
        IndexError,
        r"id 10 at ids\[1, 1\] .*num_embeddings=10",
    ),
    ("negative", [[1, 2, -1], [4, 9, 0]], IndexError, r"id -1 at ids\[0, 2\]"),
    (
        "far out of range",
        np.array([[1, 2, 3], [4, 9, 2**40]]),
        IndexError,
        r"id 1099511627776 at ids\[1, 2\]",
    ),
    (
        "int32 min",
        np.array([[1, 2, 3], [-(2**31), 9, 0]], np.int32),
        IndexError,
        r"id -2147483648 at ids\[1, 0\]",
    ),
    (
        "uint64 beyond int64",
        np.array([[1, 2**63, 3], [4, 9, 0]], np.uint64),
        IndexError,
        r"id 9223372036854775808 at ids\[0, 1\]",
    ),
    (
        "Python int beyond int64",
        [[1, 2, 3], [4, 9, 2**70]],
        IndexError,
        r"id 1180591620717411303424 at ids\[1, 2\]",
    ),
    (
        "Python int below int64",
        [[1, 2, 3], [-(2**70), 9, 0]],
        IndexError,
        r"id -1180591620717411303424 at ids\[1, 0\]",
    ),
    ("scalar out of range", 10, IndexError, r"id 10 at ids\[\(\)\]"),
    ("scalar beyond int64", 2**64, IndexError, r"id 18446744073709551616"),
    ("float array", np.array(IDS, np.float64), TypeError, "float64"),
    ("float list", [[1.0, 2.0, 3.0], [4.0, 9.0, 0.0]], TypeError, "float64"),
    ("float scalar", 1.0, TypeError, "float64"),
    ("bool array", np.ones((2, 3), bool), TypeError, "bool"),
    ("bool scalar", True, TypeError, "bool"),
    ("object array of ints", np.array(IDS, dtype=object), TypeError, "object"),
    ("complex", np.array(IDS, np.complex128), TypeError, "complex128"),
    ("string", "3", TypeError, "<U1"),
    ("string array", np.array([["1", "2", "3"], ["4", "9", "0"]]), TypeError, "<U1"),
    ("None", None, TypeError, "object"),
    ("datetime", np.array(IDS, "datetime64[s]"), TypeError, "datetime64"),
    ("ragged list", [[1, 2, 3], [4]], ValueError, "inhomogeneous"),
]


def rows_out_for(a: Arena, ids: Any) -> np.ndarray | None:
    """The arena's sentinel output where it has the shape of the lookup (else a new array)."""
    try:
        return a.rows_out if np.shape(ids) == a.ids.shape else None
    except ValueError:  # ragged
        return None


ID_CALLS = [
    # (name, call(arena, ids))
    ("gather", lambda a, ids: fastembed.gather(a.weight, ids, out=rows_out_for(a, ids))),
    ("scatter_add", lambda a, ids: fastembed.scatter_add(grad_for(ids), ids, V, out=a.table_out)),
    ("Embedding.forward", lambda a, ids: a.layer.forward(ids, out=rows_out_for(a, ids))),
    ("sparse_grad", lambda a, ids: fastembed.sparse_grad(grad_for(ids), ids, V)),
]

HOSTILE = [
    Hostile(
        f"{call_name}: ids {name}", lambda a, call=call, ids=ids: call(a, ids), exception, match
    )
    for name, ids, exception, match in BAD_IDS
    for call_name, call in ID_CALLS
]

# --- weight -----------------------------------------------------------------------------------

BAD_WEIGHTS = [
    # (name, weight from arena, exception, match)
    ("1-d", lambda a: a.weight.reshape(-1), ValueError, r"weight must be 2-d.*\(40,\)"),
    ("3-d", lambda a: a.weight.reshape(V, 2, 2), ValueError, r"weight must be 2-d.*\(10, 2, 2\)"),
    ("non-contiguous", lambda a: a.weight[:, ::2], ValueError, "weight must be C-contiguous"),
    (
        "Fortran order",
        lambda a: np.asfortranarray(a.weight),
        ValueError,
        "weight must be C-contiguous",
    ),
    ("int16", lambda a: a.weight.astype(np.int16), TypeError, "int16"),
    ("byte-swapped float16", lambda a: a.weight.astype(">f2"), TypeError, ">f2"),
    ("int32", lambda a: a.weight.astype(np.int32), TypeError, "int32"),
    ("int64", lambda a: a.weight.astype(np.int64), TypeError, "int64"),
    ("complex64", lambda a: a.weight.astype(np.complex64), TypeError, "complex64"),
    ("byte-swapped", lambda a: a.weight.astype(">f4"), TypeError, ">f4"),
    ("list", lambda a: a.weight.tolist(), TypeError, "list"),
    ("None", lambda a: None, TypeError, "NoneType"),
]
HOSTILE += [
    Hostile(
        f"gather: weight {name}", lambda a, w=w: fastembed.gather(w(a), a.ids), exception, match
    )
    for name, w, exception, match in BAD_WEIGHTS
]
HOSTILE += [  # (weight=None means "not given")
    Hostile(
        f"Embedding(weight=): {name}",
        lambda a, w=w: fastembed.Embedding(weight=w(a)),
        exception,
        match,
    )
    for name, w, exception, match in BAD_WEIGHTS
    if name != "None"
]
HOSTILE += [
    Hostile(
        "gather: zero-row table",
        lambda a: fastembed.gather(a.weight[:0], [[0]]),
        IndexError,
        r"id 0 at ids\[0, 0\] .*num_embeddings=0",
    ),
    Hostile(
        "Embedding: zero-row table",
        lambda a: fastembed.Embedding(weight=a.weight[:0])(5),
        IndexError,
        r"id 5 .*num_embeddings=0",
    ),
    Hostile(
        "gather: zero-column table, id out of range",
        lambda a: fastembed.gather(a.weight[:, :0].copy(), [3, 10]),
        IndexError,
        r"id 10 at ids\[1\]",
    ),
]

# --- out ----------------------------------------------------------------------------------------

OUT_CALLS = [
    # (name, call(arena, out), the right shape for out)
    ("gather", lambda a, out: fastembed.gather(a.weight, a.ids, out=out), (2, 3, D)),
    ("scatter_add", lambda a, out: fastembed.scatter_add(a.grad, a.ids, V, out=out), (V, D)),
    ("Embedding.forward", lambda a, out: a.layer.forward(a.ids, out=out), (2, 3, D)),
]


def _read_only(a: Arena, shape: tuple) -> np.ndarray:
    out = a.rows_out if shape == a.rows_out.shape else a.table_out
    view = out.view()
    view.flags.writeable = False
    return view


BAD_OUTS = [
    # (name, out from (arena, right shape), exception, match)
    (
        "wrong shape",
        lambda a, shape: np.zeros((*shape[:-1], D + 1), np.float32),
        ValueError,
        r"out must have shape \(.*\), got \(.*5\)",
    ),
    (
        "float64",
        lambda a, shape: np.zeros(shape, np.float64),
        TypeError,
        # (float16 and bfloat16 may receive a float32 gradient: see test_half.py)
        r"out must have dtype float32.*, got float64",
    ),
    ("int16", lambda a, shape: np.zeros(shape, np.int16), TypeError, "got int16"),
    (
        "non-contiguous",
        lambda a, shape: np.zeros((*shape[:-1], 2 * D), np.float32)[..., ::2],
        ValueError,
        "out must be C-contiguous",
    ),
    ("read-only", _read_only, ValueError, "out is read-only"),
    (
        "list",
        lambda a, shape: np.zeros(shape, np.float32).tolist(),
        TypeError,
        "out must be a NumPy array, got list",
    ),
    ("tuple", lambda a, shape: (0.0,), TypeError, "out must be a NumPy array, got tuple"),
]
# The shapes the arena holds an output of (rows_out, table_out): read-only views exist of these.
READ_ONLY_OUT_SHAPES = [(2, 3, D), (V, D)]


def bad_out_cases(calls: list) -> list[Hostile]:
    """Every bad ``out`` of BAD_OUTS for every (name, call(arena, out), shape) of ``calls``."""
    return [
        Hostile(
            f"{call_name}: out {name}",
            lambda a, call=call, out=out, shape=shape: call(a, out(a, shape)),
            exception,
            match,
        )
        for name, out, exception, match in BAD_OUTS
        for call_name, call, shape in calls
        if name != "read-only" or shape in READ_ONLY_OUT_SHAPES
    ]


HOSTILE += bad_out_cases(OUT_CALLS)
HOSTILE += [
    Hostile(
        "gather: out overlapping weight",
        lambda a: fastembed.gather(a.weight, a.ids, out=a.weight.reshape(-1)[:24].reshape(2, 3, D)),
        ValueError,
        "out must not overlap weight",
    ),
    Hostile(
        "gather: out overlapping ids",
        lambda a: fastembed.gather(a.weight, a.shared_ids, out=a.shared),
        ValueError,
        "out must not overlap ids",
    ),
    Hostile(
        "Embedding.forward: out overlapping weight",
        lambda a: a.layer.forward(a.ids, out=a.layer.weight.reshape(-1)[:24].reshape(2, 3, D)),
        ValueError,
        "out must not overlap weight",
    ),
    Hostile(
        "Embedding.forward: out overlapping ids",
        lambda a: a.layer.forward(a.shared_ids, out=a.shared),
        ValueError,
        "out must not overlap ids",
    ),
    Hostile(
        "scatter_add: out overlapping grad_output",
        lambda a: fastembed.scatter_add(
            a.table_out.reshape(V, 1, D),
            np.zeros((V, 1), np.int64),
            V,
            out=a.table_out,
        ),
        ValueError,
        "out must not overlap grad_output",
    ),
    Hostile(
        "scatter_add: out overlapping ids",
        lambda a: fastembed.scatter_add(
            np.ones((2, 3, D), np.float32), a.shared_ids, 6, out=a.shared.reshape(6, D)
        ),
        ValueError,
        "out must not overlap ids",
    ),
]

# --- grad_output --------------------------------------------------------------------------------

BAD_GRADS = [
    # (name, grad_output from arena, exception, match)
    ("wrong width", lambda a: np.ones((2, 3, D + 1), np.float32), ValueError, r"\(2, 3, 5\)"),
    ("wrong batch shape", lambda a: np.ones((2, 4, D), np.float32), ValueError, r"\(2, 4, 4\)"),
    ("missing width axis", lambda a: np.ones((2, 3), np.float32), ValueError, r"\(2, 3\)"),
    ("0-d", lambda a: np.float32(1.0), ValueError, r"\(\)"),
    ("int16", lambda a: a.grad.astype(np.int16), TypeError, "int16"),
    ("int32", lambda a: a.grad.astype(np.int32), TypeError, "int32"),
    ("complex", lambda a: a.grad.astype(np.complex64), TypeError, "complex64"),
    ("object", lambda a: a.grad.astype(object), TypeError, "object"),
]
HOSTILE += [
    Hostile(
        f"scatter_add: grad_output {name}",
        lambda a, g=g: fastembed.scatter_add(g(a), a.ids, V),
        exception,
        match,
    )
    for name, g, exception, match in BAD_GRADS
    if name != "wrong width"  # scatter_add takes the width from grad_output: valid
]
HOSTILE += [
    Hostile(
        f"Embedding.backward: grad_output {name}",
        lambda a, g=g: a.layer.backward(g(a)),
        exception,
        match,
    )
    for name, g, exception, match in BAD_GRADS
    if name != "wrong batch shape"  # the layer's last ids have another shape: below
]
HOSTILE += [
    Hostile(
        "Embedding.backward: grad_output for other ids",
        lambda a: a.layer.backward(np.ones((3, 2, D), np.float32)),
        ValueError,
        r"\(3, 2, 4\)",
    ),
    Hostile(
        "Embedding.backward: float16 grad for a float32 layer",
        lambda a: a.layer.backward(a.grad.astype(np.float16)),
        TypeError,
        r"float32.*float16",
    ),
    Hostile(
        "gather: float16 out for a float32 table (out receives rows upcast only)",
        lambda a: fastembed.gather(a.weight, a.ids, out=np.zeros((2, 3, D), np.float16)),
        TypeError,
        "out must have dtype float32, got float16",
    ),
    Hostile(
        "Embedding.backward: float64 grad for a float32 layer",
        lambda a: a.layer.backward(a.grad.astype(np.float64)),
        TypeError,
        r"float32.*float64",
    ),
    Hostile(
        "Embedding.backward: a list",
        lambda a: a.layer.backward(a.grad.tolist()),
        TypeError,
        r"float32.*float64",
    ),
    Hostile(
        "Embedding.backward: before forward",
        lambda a: fastembed.Embedding(weight=a.weight).backward(a.grad),
        RuntimeError,
        "forward",
    ),
]

# --- options (in-place updates included) --------------------------------------------------------


def _read_only_table(a: Arena) -> np.ndarray:
    """The arena's table, read-only (rows far longer than 1, so max_norm=1 must renormalise)."""
    view = a.weight.view()
    view.flags.writeable = False
    return view


HOSTILE += [
    # An update requested of a read-only array.
    Hostile(
        "gather: max_norm needs to renormalise a read-only table",
        lambda a: fastembed.gather(_read_only_table(a), a.ids, out=a.rows_out, max_norm=1.0),
        ValueError,
        r"weight is read-only.*max_norm=1\.0",
    ),
    Hostile(
        "Embedding.forward: max_norm needs to renormalise a read-only table",
        lambda a: fastembed.Embedding(weight=_read_only_table(a), max_norm=1.0)(a.ids),
        ValueError,
        r"weight is read-only.*max_norm=1\.0",
    ),
    Hostile(
        "scatter_add: accumulate into a read-only out",
        lambda a: fastembed.scatter_add(
            a.grad, a.ids, V, out=_read_only(a, (V, D)), accumulate=True
        ),
        ValueError,
        "out is read-only",
    ),
    Hostile(
        "scatter_add: accumulate without out",
        lambda a: fastembed.scatter_add(a.grad, a.ids, V, accumulate=True),
        ValueError,
        "accumulate=True needs out=",
    ),
]
BAD_OPTIONS = [
    # (name, keyword arguments, exception, match)
    ("padding_idx = V", {"padding_idx": V}, ValueError, "padding_idx=10"),
    ("padding_idx < -V", {"padding_idx": -V - 1}, ValueError, "padding_idx=-11"),
    ("padding_idx beyond int64", {"padding_idx": 2**70}, ValueError, "1180591620717411303424"),
    ("padding_idx float", {"padding_idx": 1.5}, TypeError, r"1\.5"),
    ("padding_idx bool", {"padding_idx": True}, TypeError, "True"),
]
GRAD_OPTION_CALLS = [
    ("scatter_add", lambda a, kw: fastembed.scatter_add(a.grad, a.ids, V, out=a.table_out, **kw)),
    ("sparse_grad", lambda a, kw: fastembed.sparse_grad(a.grad, a.ids, V, **kw)),
    ("Embedding", lambda a, kw: fastembed.Embedding(weight=a.weight, **kw)),
]
HOSTILE += [
    Hostile(f"{call_name}: {name}", lambda a, call=call, kw=kw: call(a, kw), exception, match)
    for name, kw, exception, match in BAD_OPTIONS
    for call_name, call in GRAD_OPTION_CALLS
]
BAD_NORMS = [
    ("max_norm 0", {"max_norm": 0.0}, ValueError, r"max_norm must be > 0, got 0\.0"),
    ("max_norm nan", {"max_norm": float("nan")}, ValueError, "nan"),
    ("max_norm string", {"max_norm": "1"}, TypeError, "'1'"),
    ("norm_type negative", {"max_norm": 1.0, "norm_type": -1}, ValueError, r"-1"),
    ("norm_type nan", {"max_norm": 1.0, "norm_type": float("nan")}, ValueError, "nan"),
]
HOSTILE += [
    Hostile(
        f"gather: {name}",
        lambda a, kw=kw: fastembed.gather(a.weight, a.ids, out=a.rows_out, **kw),
        exception,
        match,
    )
    for name, kw, exception, match in BAD_NORMS
]
HOSTILE += [
    Hostile(
        f"Embedding: {name}",
        lambda a, kw=kw: fastembed.Embedding(weight=a.weight, **kw),
        exception,
        match,
    )
    for name, kw, exception, match in BAD_NORMS
]

# --- sizes --------------------------------------------------------------------------------------

BAD_COUNTS = [
    # (name, value, exception, match)
    ("negative", -1, ValueError, "-1"),
    ("float", 10.0, TypeError, r"10\.0"),
    ("fractional", 3.5, TypeError, r"3\.5"),
    ("bool", True, TypeError, "True"),
    ("string", "10", TypeError, "'10'"),
    ("None", None, TypeError, "None"),
    ("beyond int64", 2**70, ValueError, "1180591620717411303424"),
    ("beyond the address space", 2**62, ValueError, "4611686018427387904"),
]
HOSTILE += [
    Hostile(
        f"scatter_add: num_embeddings {name}",
        lambda a, n=n: fastembed.scatter_add(a.grad, a.ids, n),
        exception,
        match,
    )
    for name, n, exception, match in BAD_COUNTS
]
HOSTILE += [
    Hostile(
        f"sparse_grad: num_embeddings {name}",
        lambda a, n=n: fastembed.sparse_grad(a.grad, a.ids, n),
        exception,
        match,
    )
    for name, n, exception, match in BAD_COUNTS
    if name != "beyond the address space"  # valid: a sparse gradient is O(N * D)
]
HOSTILE += [
    Hostile(
        f"Embedding: num_embeddings {name}",
        lambda a, n=n: fastembed.Embedding(n, D),
        exception,
        match,
    )
    for name, n, exception, match in BAD_COUNTS
    if n is not None  # None means "not given"
]
HOSTILE += [
    Hostile(
        f"Embedding: embedding_dim {name}",
        lambda a, n=n: fastembed.Embedding(V, n),
        exception,
        match,
    )
    for name, n, exception, match in BAD_COUNTS
    if n is not None
]
HOSTILE += [
    Hostile(
        "scatter_add: num_embeddings below an id",
        lambda a: fastembed.scatter_add(a.grad, a.ids, 5, out=a.table_out[:5]),
        IndexError,
        r"id 9 at ids\[1, 1\] .*num_embeddings=5",
    ),
]


# --- bags: offsets, ids, per-sample weights, modes, gradients, argmax ---------------------------

BAD_OFFSETS = [
    # (name, offsets for the arena's 6 bag ids, keyword arguments, exception, match)
    ("first not 0", [1, 3], {}, ValueError, r"offsets\[0\] must be 0, got 1"),
    ("decreasing", [0, 4, 2], {}, ValueError, r"offsets\[2\]=2 < offsets\[1\]=4"),
    ("negative", [0, -1], {}, ValueError, r"offsets\[1\]=-1 < offsets\[0\]=0"),
    ("beyond len(ids)", [0, 7], {}, ValueError, r"offsets\[-1\]=7 .*number of ids, 6"),
    (
        "beyond len(ids), last offset included",
        [0, 2, 7],
        {"include_last_offset": True},
        ValueError,
        r"offsets\[-1\]=7",
    ),
    (
        "uint64 beyond int64",
        np.array([0, 2**63], np.uint64),
        {},
        ValueError,
        "9223372036854775808",
    ),
    ("Python int beyond int64", [0, 2**70], {}, ValueError, r"offsets\[1\]=1180591620717411303424"),
    ("float array", np.array([0.0, 2.0]), {}, TypeError, "offsets must be integers.*float64"),
    ("float list", [0.0, 2.0], {}, TypeError, "offsets must be integers.*float64"),
    ("bool", np.array([False, True]), {}, TypeError, "offsets must be integers.*bool"),
    ("string", "0", {}, TypeError, "offsets must be integers.*<U1"),
    ("2-d", [[0, 2]], {}, ValueError, r"offsets must be 1-d, got shape \(1, 2\)"),
    ("0-d", 0, {}, ValueError, r"offsets must be 1-d, got shape \(\)"),
    (
        "empty with include_last_offset",
        np.zeros(0, np.int64),
        {"include_last_offset": True},
        ValueError,
        "at least one entry",
    ),
]
OFFSET_CALLS = [
    # (name, call(arena, offsets, keyword arguments))
    (
        "embedding_bag",
        lambda a, o, kw: fastembed.embedding_bag(
            a.weight, a.bag_ids, o, mode="sum", out=a.bag_out, **kw
        ),
    ),
    (
        "embedding_bag_backward",
        lambda a, o, kw: fastembed.embedding_bag_backward(
            a.bag_grad, a.bag_ids, o, num_embeddings=V, mode="sum", out=a.table_out, **kw
        ),
    ),
    (
        "embedding_bag_per_sample_weights_backward",
        lambda a, o, kw: fastembed.embedding_bag_per_sample_weights_backward(
            a.bag_grad, a.weight, a.bag_ids, o, **kw
        ),
    ),
    (
        "EmbeddingBag.forward",
        lambda a, o, kw: (
            fastembed.EmbeddingBag(weight=a.weight, mode="sum", **kw)(a.bag_ids, o)
            if kw
            else a.bag.forward(a.bag_ids, o)
        ),
    ),
]
HOSTILE += [
    Hostile(
        f"{call_name}: offsets {name}",
        lambda a, call=call, o=o, kw=kw: call(a, o, kw),
        exception,
        match,
    )
    for name, o, kw, exception, match in BAD_OFFSETS
    for call_name, call in OFFSET_CALLS
]

# 2-d ids are fixed-length bags: every bad id of BAD_IDS that is a 2-d array or list.
BAG_ID_CALLS = [
    # (name, call(arena, ids))
    (
        "embedding_bag",
        lambda a, ids: fastembed.embedding_bag(
            a.weight, ids, mode="mean", out=a.bag_out if np.shape(ids) == (2, 3) else None
        ),
    ),
    (
        "embedding_bag(max)",
        lambda a, ids: fastembed.embedding_bag(a.weight, ids, mode="max", return_argmax=True),
    ),
    (
        "embedding_bag_backward",
        lambda a, ids: fastembed.embedding_bag_backward(
            a.bag_grad, ids, num_embeddings=V, mode="mean", out=a.table_out
        ),
    ),
    (
        "embedding_bag_backward(sparse)",
        lambda a, ids: fastembed.embedding_bag_backward(
            a.bag_grad, ids, num_embeddings=V, mode="sum", sparse=True
        ),
    ),
    (
        "embedding_bag_per_sample_weights_backward",
        lambda a, ids: fastembed.embedding_bag_per_sample_weights_backward(
            a.bag_grad, a.weight, ids
        ),
    ),
    ("EmbeddingBag.forward", lambda a, ids: a.bag.forward(ids)),
    ("EmbeddingBag(max).forward", lambda a, ids: a.max_bag.forward(ids)),
]


def _two_dimensional(ids: Any) -> bool:
    try:
        return np.ndim(ids) == 2
    except ValueError:  # ragged: as_ids reports it
        return True


HOSTILE += [
    Hostile(
        f"{call_name}: ids {name}", lambda a, call=call, ids=ids: call(a, ids), exception, match
    )
    for name, ids, exception, match in BAD_IDS
    if _two_dimensional(ids)
    for call_name, call in BAG_ID_CALLS
]
HOSTILE += [
    Hostile(
        "embedding_bag: 1-d ids without offsets",
        lambda a: fastembed.embedding_bag(a.weight, a.bag_ids, mode="sum", out=a.bag_out),
        ValueError,
        r"ids must be 2-d .*got shape \(6,\)",
    ),
    Hostile(
        "EmbeddingBag.forward: 2-d ids with offsets",
        lambda a: a.bag.forward(a.ids, [0, 1]),
        ValueError,
        r"ids must be 1-d when offsets are given, got shape \(2, 3\)",
    ),
    Hostile(
        "embedding_bag: 1-d ids, one out of range",
        lambda a: fastembed.embedding_bag(a.weight, [1, 2, 10], [0, 2], mode="sum", out=a.bag_out),
        IndexError,
        r"id 10 at ids\[2\]",
    ),
]

BAD_WEIGHTS_PER_SAMPLE = [
    # (name, per_sample_weights for the 6 bag ids, exception, match)
    ("too short", lambda a: a.per_sample_weights[:5], ValueError, r"\(6,\), got \(5,\)"),
    ("2-d", lambda a: a.per_sample_weights.reshape(2, 3), ValueError, r"\(6,\), got \(2, 3\)"),
    ("0-d", lambda a: np.float32(1), ValueError, r"\(6,\), got \(\)"),
    (
        "float64",
        lambda a: a.per_sample_weights.astype(np.float64),
        TypeError,
        "float32, got float64",
    ),
    ("int64", lambda a: np.ones(6, np.int64), TypeError, "float32, got int64"),
    ("object", lambda a: np.ones(6, object), TypeError, "got object"),
    ("a list of floats", lambda a: [1.0] * 6, TypeError, "float32, got float64"),
]
PER_SAMPLE_CALLS = [
    # (name, call(arena, per_sample_weights))
    (
        "embedding_bag",
        lambda a, w: fastembed.embedding_bag(
            a.weight, a.bag_ids, a.bag_offsets, mode="sum", per_sample_weights=w, out=a.bag_out
        ),
    ),
    (
        "embedding_bag_backward",
        lambda a, w: fastembed.embedding_bag_backward(
            a.bag_grad,
            a.bag_ids,
            a.bag_offsets,
            num_embeddings=V,
            mode="sum",
            per_sample_weights=w,
            out=a.table_out,
        ),
    ),
    ("EmbeddingBag.forward", lambda a, w: a.bag.forward(a.bag_ids, a.bag_offsets, w)),
]
HOSTILE += [
    Hostile(
        f"{call_name}: per_sample_weights {name}",
        lambda a, call=call, w=w: call(a, w(a)),
        exception,
        match,
    )
    for name, w, exception, match in BAD_WEIGHTS_PER_SAMPLE
    for call_name, call in PER_SAMPLE_CALLS
]
HOSTILE += [
    Hostile(
        f"embedding_bag: per_sample_weights with mode={mode!r}",
        lambda a, mode=mode: fastembed.embedding_bag(
            a.weight, a.bag_ids, a.bag_offsets, mode=mode, per_sample_weights=a.per_sample_weights
        ),
        ValueError,
        f"per_sample_weights are only supported with mode='sum', got mode='{mode}'",
    )
    for mode in ("mean", "max")
] + [
    Hostile(
        "EmbeddingBag(max).forward: per_sample_weights",
        lambda a: a.max_bag.forward(a.bag_ids, a.bag_offsets, a.per_sample_weights),
        ValueError,
        "got mode='max'",
    ),
]

BAD_MODES = [
    # (name, mode, match); always ValueError
    ("unknown", "avg", "'avg'"),
    ("upper case", "SUM", "'SUM'"),
    ("None", None, "None"),
    ("int", 1, "got 1"),
    ("list", ["sum"], r"\['sum'\]"),
]
HOSTILE += [
    Hostile(f"{call_name}: mode {name}", lambda a, call=call, m=m: call(a, m), ValueError, match)
    for name, m, match in BAD_MODES
    for call_name, call in [
        (
            "embedding_bag",
            lambda a, m: fastembed.embedding_bag(a.weight, a.ids, mode=m, out=a.bag_out),
        ),
        (
            "embedding_bag_backward",
            lambda a, m: fastembed.embedding_bag_backward(
                a.bag_grad, a.ids, num_embeddings=V, mode=m, out=a.table_out
            ),
        ),
        ("EmbeddingBag", lambda a, m: fastembed.EmbeddingBag(weight=a.weight, mode=m)),
    ]
]

BAD_BAG_GRADS = [
    # (name, grad_output for the arena's two bags, exception, match)
    (
        "wrong width",
        lambda a: np.ones((2, D + 1), np.float32),
        ValueError,
        r"\(2, 4\), got \(2, 5\)",
    ),
    ("wrong bag count", lambda a: np.ones((3, D), np.float32), ValueError, r"got \(3, 4\)"),
    ("1-d", lambda a: np.ones(D, np.float32), ValueError, r"got (shape )?\(4,\)"),
    ("3-d", lambda a: np.ones((2, 1, D), np.float32), ValueError, r"got (shape )?\(2, 1, 4\)"),
    ("0-d", lambda a: np.float32(1.0), ValueError, r"got (shape )?\(\)"),
    ("float16", lambda a: a.bag_grad.astype(np.float16), TypeError, "float16"),
    ("int32", lambda a: a.bag_grad.astype(np.int32), TypeError, "int32"),
    ("complex", lambda a: a.bag_grad.astype(np.complex64), TypeError, "complex64"),
    ("object", lambda a: a.bag_grad.astype(object), TypeError, "object"),
]
BAG_GRAD_CALLS = (
    [
        # (name, call(arena, grad_output), whether a float64 grad_output is an error)
        (
            "embedding_bag_backward",
            lambda a, g: fastembed.embedding_bag_backward(
                g, a.bag_ids, a.bag_offsets, num_embeddings=V, mode="mean", out=a.table_out
            ),
            False,
        ),
        (
            "embedding_bag_backward(sparse)",
            lambda a, g: fastembed.embedding_bag_backward(
                g, a.bag_ids, a.bag_offsets, num_embeddings=V, mode="sum", sparse=True
            ),
            False,
        ),
        (
            "embedding_bag_per_sample_weights_backward",
            lambda a, g: fastembed.embedding_bag_per_sample_weights_backward(
                g, a.weight, a.bag_ids, a.bag_offsets
            ),
            True,
        ),
        ("EmbeddingBag.backward", lambda a, g: a.bag.backward(g), True),
        ("EmbeddingBag(max).backward", lambda a, g: a.max_bag.backward(g), True),
    ]
    + [
        (
            f"EmbeddingBag.backward(optimizer={name})",
            lambda a, g, name=name: a.bag.backward(g, optimizer=a.optimizers[name]),
            True,
        )
        for name in OPTIMIZERS
    ]
    + [
        (
            f"EmbeddingBag(max).backward(optimizer={name})",
            lambda a, g, name=name: a.max_bag.backward(g, optimizer=a.optimizers[name]),
            True,
        )
        for name in OPTIMIZERS
    ]
)
HOSTILE += [
    Hostile(
        f"{call_name}: grad_output {name}",
        lambda a, call=call, g=g: call(a, g(a)),
        exception,
        match,
    )
    for name, g, exception, match in BAD_BAG_GRADS
    for call_name, call, _ in BAG_GRAD_CALLS
    # embedding_bag_backward takes the width and the dtype (float16 too) from grad_output: valid
    if name not in ("wrong width", "float16") or not call_name.startswith("embedding_bag_backward")
] + [
    Hostile(
        "embedding_bag_backward: float16 grad_output, float64 out",
        lambda a: fastembed.embedding_bag_backward(
            a.bag_grad.astype(np.float16),
            a.bag_ids,
            a.bag_offsets,
            num_embeddings=V,
            mode="sum",
            out=np.zeros((V, D)),
        ),  # fmt: skip
        TypeError,
        "out must have dtype float32, float16 or bfloat16 for a float16 input, got float64",
    )
]
HOSTILE += [
    Hostile(
        f"{call_name}: float64 grad_output for a float32 table",
        lambda a, call=call: call(a, a.bag_grad.astype(np.float64)),
        TypeError,
        r"float32.*float64",
    )
    for call_name, call, float64_is_bad in BAG_GRAD_CALLS
    if float64_is_bad
]
HOSTILE += [
    Hostile(
        "EmbeddingBag.backward: before forward",
        lambda a: fastembed.EmbeddingBag(weight=a.weight).backward(a.bag_grad),
        RuntimeError,
        "forward",
    ),
    Hostile(
        "EmbeddingBag.backward(optimizer): before forward",
        lambda a: fastembed.EmbeddingBag(weight=a.weight).backward(
            a.bag_grad, optimizer=a.optimizers["Adam"]
        ),
        RuntimeError,
        "forward",
    ),
]


def _max_backward(a: Arena, argmax: Any) -> Any:
    return fastembed.embedding_bag_backward(
        a.bag_grad,
        a.bag_ids,
        a.bag_offsets,
        num_embeddings=V,
        mode="max",
        argmax=argmax,
        out=a.table_out,
    )


def _argmax_with(position: int) -> np.ndarray:
    """A valid argmax of the arena's bags ([0, 2) and [2, 6)) with one entry replaced."""
    argmax = np.array([[0, 1, 0, 1], [2, 3, 4, 5]], np.int64)
    argmax[1, 2] = position
    return argmax


BAD_ARGMAX = [
    # (name, argmax, match); always ValueError
    ("missing", None, r"needs the forward's argmax.*\(2, 4\)"),
    ("wrong shape", np.zeros((2, D + 1), np.int64), r"needs the forward's argmax.*\(2, 4\)"),
    ("int32", _argmax_with(2).astype(np.int32), r"needs the forward's argmax.*int64"),
    ("past the ids", _argmax_with(99), r"argmax\[1, 2\]=99 is not a position in bag 1"),
    ("past the end of its bag", _argmax_with(6), r"argmax\[1, 2\]=6 .*ids\[2:6\]"),
    ("in another bag", _argmax_with(1), r"argmax\[1, 2\]=1 is not a position in bag 1"),
    ("negative", _argmax_with(-2), r"argmax\[1, 2\]=-2"),
    ("int64 min", _argmax_with(-(2**63)), r"argmax\[1, 2\]=-9223372036854775808"),
]
HOSTILE += [
    Hostile(
        f"embedding_bag_backward(max): argmax {name}",
        lambda a, argmax=argmax: _max_backward(a, argmax),
        ValueError,
        match,
    )
    for name, argmax, match in BAD_ARGMAX
]
HOSTILE += [
    Hostile(
        f"embedding_bag_backward: num_embeddings {name}",
        lambda a, n=n: fastembed.embedding_bag_backward(
            a.bag_grad, a.bag_ids, a.bag_offsets, num_embeddings=n, mode="sum"
        ),
        exception,
        match,
    )
    for name, n, exception, match in BAD_COUNTS
] + [
    Hostile(
        "embedding_bag_backward: num_embeddings below an id",
        lambda a: fastembed.embedding_bag_backward(
            a.bag_grad, a.bag_ids, a.bag_offsets, num_embeddings=5, mode="sum", out=a.table_out[:5]
        ),
        IndexError,
        r"id 9 at ids\[4\] .*num_embeddings=5",
    ),
]
HOSTILE += (
    [
        Hostile(
            f"embedding_bag: weight {name}",
            lambda a, w=w: fastembed.embedding_bag(w(a), a.ids, mode="sum", out=a.bag_out),
            exception,
            match,
        )
        for name, w, exception, match in BAD_WEIGHTS
    ]
    + [
        Hostile(
            f"EmbeddingBag(weight=): {name}",
            lambda a, w=w: fastembed.EmbeddingBag(weight=w(a)),
            exception,
            match,
        )
        for name, w, exception, match in BAD_WEIGHTS
        if name != "None"
    ]
    + [
        Hostile(
            f"embedding_bag_per_sample_weights_backward: weight {name}",
            lambda a, w=w: fastembed.embedding_bag_per_sample_weights_backward(
                a.bag_grad, w(a), a.ids
            ),
            exception,
            match,
        )
        for name, w, exception, match in BAD_WEIGHTS
        if name not in ("int32", "int64")  # the grad's dtype is checked first: another message
    ]
)
BAG_OUT_CALLS = [
    # (name, call(arena, out), the right shape for out)
    (
        "embedding_bag",
        lambda a, out: fastembed.embedding_bag(
            a.weight, a.bag_ids, a.bag_offsets, mode="max", out=out
        ),
        (2, D),
    ),
    (
        "embedding_bag_backward",
        lambda a, out: fastembed.embedding_bag_backward(
            a.bag_grad, a.bag_ids, a.bag_offsets, num_embeddings=V, mode="sum", out=out
        ),
        (V, D),
    ),
]
HOSTILE += bad_out_cases(BAG_OUT_CALLS)
HOSTILE += [
    Hostile(
        "embedding_bag: out overlapping weight",
        lambda a: fastembed.embedding_bag(a.weight, a.ids, mode="sum", out=a.weight[:2]),
        ValueError,
        "out must not overlap weight",
    ),
    Hostile(
        "embedding_bag_backward: accumulate into a read-only out",
        lambda a: fastembed.embedding_bag_backward(
            a.bag_grad,
            a.bag_ids,
            a.bag_offsets,
            num_embeddings=V,
            mode="sum",
            out=_read_only(a, (V, D)),
            accumulate=True,
        ),
        ValueError,
        "out is read-only",
    ),
    Hostile(
        "embedding_bag_backward: accumulate without out",
        lambda a: fastembed.embedding_bag_backward(
            a.bag_grad, a.bag_ids, a.bag_offsets, num_embeddings=V, mode="sum", accumulate=True
        ),
        ValueError,
        "accumulate needs out",
    ),
    Hostile(
        "embedding_bag: return_argmax with mode='sum'",
        lambda a: fastembed.embedding_bag(
            a.weight, a.ids, mode="sum", out=a.bag_out, return_argmax=True
        ),
        ValueError,
        "return_argmax needs mode='max', got mode='sum'",
    ),
]
HOSTILE += [
    Hostile(
        f"{call_name}: {name}",
        lambda a, call=call, kw=kw: call(a, kw),
        exception,
        match,
    )
    for name, kw, exception, match in BAD_OPTIONS
    for call_name, call in [
        (
            "embedding_bag",
            lambda a, kw: fastembed.embedding_bag(a.weight, a.ids, mode="sum", out=a.bag_out, **kw),
        ),
        (
            "embedding_bag_backward",
            lambda a, kw: fastembed.embedding_bag_backward(
                a.bag_grad, a.ids, num_embeddings=V, mode="sum", out=a.table_out, **kw
            ),
        ),
        ("EmbeddingBag", lambda a, kw: fastembed.EmbeddingBag(weight=a.weight, **kw)),
    ]
]

# --- optimizer steps ----------------------------------------------------------------------------


def _read_only_state(a: Arena, optimizer: str, name: str) -> None:
    """Make one state array of the arena's Embedding read-only in place (same object, bytes)."""
    a.optimizers[optimizer].state(a.layer)[name].flags.writeable = False


STATE_NAMES = {
    "SGD": [],
    "SGD(momentum)": ["momentum_buffer"],
    "Adagrad": ["state_sum"],
    "Adagrad(rowwise)": ["state_sum"],
    "Adam": ["exp_avg", "exp_avg_sq", "step"],
}


def _with_state(a: Arena, optimizer: str, key: str, value: np.ndarray) -> dict[str, np.ndarray]:
    state_dict = dict(a.optimizers[optimizer].state_dict())
    state_dict[key] = value
    state_dict["lr"] = np.asarray(123.0)  # must not be applied either
    return state_dict


def _load_bad_state_then_step(a: Arena, optimizer: str, key: str, value: np.ndarray) -> None:
    """A new optimizer loaded with a bad state for its first table, then stepped."""
    fresh = OPTIMIZERS[optimizer]()
    fresh.load_state_dict(_with_state(a, optimizer, key, value))
    a.layer.backward(a.grad, optimizer=fresh)


def _frozen_step(a: Arena, optimizer: Any) -> None:
    layer = fastembed.Embedding.from_pretrained(a.weight)  # freeze=True
    layer(a.ids)
    optimizer.step(layer, a.grad)


def _frozen_backward(a: Arena, optimizer: Any) -> None:
    layer = fastembed.Embedding(weight=a.weight, trainable=False)
    layer(a.ids)
    layer.backward(a.grad, optimizer=optimizer)


def _read_only_backward(a: Arena, optimizer: Any) -> None:
    layer = fastembed.Embedding(weight=_read_only_table(a))
    layer(a.ids)
    layer.backward(a.grad, optimizer=optimizer)


def _read_only_bag_backward(a: Arena, optimizer: Any) -> None:
    bag = fastembed.EmbeddingBag(weight=_read_only_table(a), mode="max")
    bag(a.bag_ids, a.bag_offsets)
    bag.backward(a.bag_grad, optimizer=optimizer)


for _name in OPTIMIZERS:
    HOSTILE += [
        Hostile(
            f"{_name}: step on a frozen layer",
            lambda a, o=_name: _frozen_step(a, a.optimizers[o]),
            ValueError,
            r"frozen \(trainable=False\)",
        ),
        Hostile(
            f"{_name}: frozen Embedding.backward",
            lambda a, o=_name: _frozen_backward(a, a.optimizers[o]),
            ValueError,
            r"frozen \(trainable=False\)",
        ),
        Hostile(
            f"{_name}: read-only table",
            lambda a, o=_name: _read_only_backward(a, a.optimizers[o]),
            ValueError,
            "read-only: an optimizer cannot update it",
        ),
        Hostile(
            f"{_name}: read-only EmbeddingBag table",
            lambda a, o=_name: _read_only_bag_backward(a, a.optimizers[o]),
            ValueError,
            "read-only: an optimizer cannot update it",
        ),
        Hostile(
            f"{_name}: Embedding.backward grad_output for other ids",
            lambda a, o=_name: a.layer.backward(
                np.ones((3, 2, D), np.float32), optimizer=a.optimizers[o]
            ),
            ValueError,
            r"\(3, 2, 4\)",
        ),
        Hostile(
            f"{_name}: Embedding.backward float64 grad_output",
            lambda a, o=_name: a.layer.backward(
                a.grad.astype(np.float64), optimizer=a.optimizers[o]
            ),
            TypeError,
            r"float32.*float64",
        ),
        Hostile(
            f"{_name}: step on an array",
            lambda a, o=_name: a.optimizers[o].step(a.weight, a.grad),
            TypeError,
            "Embedding or EmbeddingBag layer, got ndarray",
        ),
    ]
    for _state in STATE_NAMES[_name]:
        HOSTILE += [
            Hostile(
                f"{_name}: read-only {_state}",
                lambda a, o=_name, s=_state: (
                    _read_only_state(a, o, s),
                    a.layer.backward(a.grad, optimizer=a.optimizers[o]),
                ),
                ValueError,
                f"{_state}.*(read-only|writeable=False)",
            ),
            Hostile(
                f"{_name}: load_state_dict with a wrong-shape {_state}",
                lambda a, o=_name, s=_state: a.optimizers[o].load_state_dict(
                    _with_state(a, o, f"table0.{s}", np.zeros((3, 3), np.float32))
                ),
                ValueError,
                rf"loaded {_state} has shape \(3, 3\)",
            ),
            Hostile(
                f"{_name}: load_state_dict with a float64 {_state}",
                lambda a, o=_name, s=_state: a.optimizers[o].load_state_dict(
                    _with_state(
                        a, o, f"table1.{s}", a.optimizers[o].state(a.max_bag)[s].astype(np.float64)
                    )
                ),
                ValueError,
                rf"loaded {_state} has shape .* and dtype float64",
            ),
            Hostile(
                f"{_name}: first step after loading a wrong-shape {_state}",
                lambda a, o=_name, s=_state: _load_bad_state_then_step(
                    a, o, f"table0.{s}", np.zeros((3, 3), np.float32)
                ),
                ValueError,
                rf"loaded {_state} has shape \(3, 3\)",
            ),
        ]


BAD_HYPERPARAMETERS = [
    # (name, make, exception, match)
    ("SGD lr 0", lambda: fastembed.optim.SGD(0.0), ValueError, r"lr must be .*> 0, got 0\.0"),
    ("SGD lr nan", lambda: fastembed.optim.SGD(float("nan")), ValueError, "got nan"),
    ("SGD lr inf", lambda: fastembed.optim.SGD(float("inf")), ValueError, "got inf"),
    (
        "SGD lr string",
        lambda: fastembed.optim.SGD("0.1"),
        TypeError,
        "lr must be a real number, got '0.1'",
    ),
    ("SGD lr None", lambda: fastembed.optim.SGD(None), TypeError, "got None"),
    (
        "SGD momentum negative",
        lambda: fastembed.optim.SGD(0.1, -0.5),
        ValueError,
        r"momentum .*-0\.5",
    ),
    ("Adagrad eps negative", lambda: fastembed.optim.Adagrad(eps=-1.0), ValueError, r"eps .*-1\.0"),
    ("Adagrad lr bool", lambda: fastembed.optim.Adagrad(lr=True), TypeError, "True"),
    (
        "Adam beta1 = 1",
        lambda: fastembed.optim.Adam(betas=(1.0, 0.9)),
        ValueError,
        r"betas\[0\].*1\.0",
    ),
    (
        "Adam beta2 < 0",
        lambda: fastembed.optim.Adam(betas=(0.9, -0.1)),
        ValueError,
        r"betas\[1\].*-0\.1",
    ),
    ("Adam one beta", lambda: fastembed.optim.Adam(betas=(0.9,)), ValueError, r"pair .*\(0\.9,\)"),
    ("Adam betas string", lambda: fastembed.optim.Adam(betas="ab"), ValueError, "'ab'"),
    (
        "Adam beta string",
        lambda: fastembed.optim.Adam(betas=("a", 0.9)),
        TypeError,
        r"betas\[0\].*'a'",
    ),
    ("Adam eps 0", lambda: fastembed.optim.Adam(eps=0.0), ValueError, r"eps .*0\.0"),
]
HOSTILE += [
    Hostile(f"optimizer: {name}", lambda a, make=make: make(), exception, match)
    for name, make, exception, match in BAD_HYPERPARAMETERS
]


@pytest.mark.parametrize("case", [_param(case) for case in HOSTILE])
def test_bad_input_raises_before_writing_anything(case):
    arena = Arena()
    before = arena.state()
    with pytest.raises(case.exception, match=case.match) as raised:
        case.call(arena)
    assert type(raised.value) is case.exception, (
        f"got {type(raised.value).__name__}: {raised.value}"
    )
    after = arena.state()
    for name in before:
        assert after[name][0] == before[name][0], f"{name} was replaced"
        assert after[name][1] == before[name][1], f"{name} was written to"


def test_every_message_is_specific():
    """No case may be satisfied by pybind11's generic argument error."""
    for case in HOSTILE:
        assert "incompatible" not in case.match
        assert re.compile(case.match)


# --- thread counts --------------------------------------------------------------------------


@pytest.mark.usefixtures("restore_num_threads")
@pytest.mark.parametrize(
    ("n", "exception", "match"),
    [
        (0, ValueError, "0"),
        (-(2**70), ValueError, str(-(2**70))),
        (2**70, ValueError, str(2**70)),
        (10**6, ValueError, "1000000"),
        (2.5, TypeError, r"2\.5"),
        (2.0, TypeError, r"2\.0"),
        (True, TypeError, "True"),
        ("2", TypeError, "'2'"),
        (None, TypeError, "None"),
    ],
    ids=str,
)
def test_bad_thread_count(n, exception, match):
    before = fastembed.get_num_threads()
    with pytest.raises(exception, match=match):
        fastembed.set_num_threads(n)
    assert fastembed.get_num_threads() == before


@pytest.mark.parametrize(
    ("nbytes", "exception", "match"),
    [
        (-1, ValueError, "-1"),
        (2**70, ValueError, str(2**70)),
        (1.5, TypeError, r"1\.5"),
        (True, TypeError, "True"),
        ("1", TypeError, "'1'"),
    ],
    ids=str,
)
def test_bad_buffer_cache_limit(nbytes, exception, match):
    before = fastembed.set_buffer_cache_limit(1 << 20)
    try:
        with pytest.raises(exception, match=match):
            fastembed.set_buffer_cache_limit(nbytes)
        assert fastembed.set_buffer_cache_limit(before) == 1 << 20
    finally:
        fastembed.set_buffer_cache_limit(before)


# --- unusual but valid input: accepted, correct, and nothing else written -----------------------

GOOD_IDS = [
    # (name, ids as given); all mean the same values as np.array(values, int64)
    ("nested list", IDS),
    ("Python int", 7),
    ("NumPy int scalar", np.uint16(7)),
    ("0-d array", np.array(7, np.int8)),
    ("empty list", []),
    ("empty nested list", [[], []]),
    ("empty 2-d int32", np.zeros((2, 0), np.int32)),
    ("int8", np.array(IDS, np.int8)),
    ("uint64 in range", np.array(IDS, np.uint64)),
    ("byte-swapped int64", np.array(IDS, ">i8")),
    ("byte-swapped uint16", np.array(IDS, ">u2")),
    ("non-contiguous", np.array([[1, 0, 2, 0, 3, 0], [4, 0, 9, 0, 0, 0]])[:, ::2]),
    ("transposed", np.array(IDS).T),
    ("Fortran order", np.asfortranarray(IDS)),
    ("read-only", np.array(IDS)),
]
GOOD_IDS[-1][1].flags.writeable = False


@pytest.mark.parametrize(("name", "ids"), GOOD_IDS, ids=[name for name, _ in GOOD_IDS])
def test_unusual_ids_are_accepted(name, ids):
    arena = Arena()
    before_ids = np.array(ids, copy=True) if isinstance(ids, np.ndarray) else None
    values = np.array(ids, dtype=np.int64)
    rows = fastembed.gather(arena.weight, ids)
    assert rows.tobytes() == reference_gather(arena.weight, values).tobytes()
    layer = fastembed.Embedding(weight=arena.weight)  # no gradient yet: backward's is this call's
    assert layer.forward(ids).tobytes() == rows.tobytes()
    grad = grad_for(values)
    expected = reference_scatter_add(grad, values, V)
    np.testing.assert_array_equal(fastembed.scatter_add(grad, ids, V), expected)
    np.testing.assert_array_equal(layer.backward(grad), expected)
    if before_ids is not None:
        assert np.array(ids).tobytes() == before_ids.tobytes()


def test_zero_row_table_with_empty_ids():
    weight = np.zeros((0, D), np.float32)
    assert fastembed.gather(weight, []).shape == (0, D)
    assert fastembed.Embedding(weight=weight)(np.zeros((2, 0), np.int64)).shape == (2, 0, D)
    assert fastembed.scatter_add(np.zeros((0, D), np.float32), [], 0).shape == (0, D)


def test_zero_column_table():
    weight = np.zeros((V, 0), np.float64)
    assert fastembed.gather(weight, IDS).shape == (2, 3, 0)
    emb = fastembed.Embedding(weight=weight)
    assert emb(IDS).shape == (2, 3, 0)
    assert emb.backward(np.zeros((2, 3, 0))).shape == (V, 0)


def test_gradient_as_a_list_or_strided_view_is_accepted():
    arena = Arena()
    grad = np.linspace(-1, 1, 2 * 3 * 2 * D).reshape(2, 3, 2 * D)[..., ::2]
    expected = reference_scatter_add(grad, arena.ids, V)
    np.testing.assert_allclose(fastembed.scatter_add(grad, arena.ids, V), expected)
    np.testing.assert_allclose(fastembed.scatter_add(grad.tolist(), arena.ids, V), expected)


@pytest.mark.parametrize("kind", list(OPTIMIZERS))
def test_a_failed_first_step_keeps_the_loaded_state(kind):
    """A state loaded for a table not stepped yet is used by the first step that succeeds, not
    dropped by one that failed."""
    arena = Arena()
    saved = {key: value.copy() for key, value in arena.optimizers[kind].state_dict().items()}
    weight = arena.layer.weight.copy()

    def restored_layer() -> fastembed.Embedding:
        layer = fastembed.Embedding(weight=weight.copy())
        layer(arena.ids)
        return layer

    expected = restored_layer()
    optimizer = OPTIMIZERS[kind]()
    optimizer.load_state_dict(saved)
    expected.backward(arena.grad, optimizer=optimizer)

    got = restored_layer()
    optimizer = OPTIMIZERS[kind]()
    optimizer.load_state_dict(saved)
    with pytest.raises(ValueError, match=r"\(3, 2, 4\)"):
        got.backward(np.ones((3, 2, D), np.float32), optimizer=optimizer)
    assert got.weight.tobytes() == weight.tobytes()
    got.backward(arena.grad, optimizer=optimizer)
    assert got.weight.tobytes() == expected.weight.tobytes()


# --- reduced-precision and quantized tables ----------------------------------------------------


@dataclass
class PrecisionArena:
    """Tables of the new kinds, their layers (stepped once), and outputs full of a sentinel."""

    half: np.ndarray = field(
        default_factory=lambda: (
            np.linspace(-1, 1, V * D, dtype=np.float32).reshape(V, D).astype(np.float16)
        )
    )
    finite: np.ndarray = field(
        default_factory=lambda: np.linspace(-3, 3, V * D, dtype=np.float32).reshape(V, D)
    )
    poisoned: np.ndarray = field(
        default_factory=lambda: np.where(
            np.arange(V * D).reshape(V, D) == 6, np.nan, np.ones((V, D), np.float32)
        ).astype(np.float32)
    )
    ids: np.ndarray = field(default_factory=lambda: np.array(IDS, dtype=np.int64))
    bad_ids: np.ndarray = field(default_factory=lambda: np.array([[1, 2, 3], [4, V, 0]]))
    grad: np.ndarray = field(
        default_factory=lambda: np.linspace(-1, 1, 2 * 3 * D, dtype=np.float32).reshape(2, 3, D)
    )
    rows_out: np.ndarray = field(default_factory=lambda: np.full((2, 3, D), SENTINEL, np.float32))
    half_out: np.ndarray = field(default_factory=lambda: np.full((V, D), SENTINEL, np.float16))
    quantized: fastembed.QuantizedTable = field(init=False)
    packed: np.ndarray = field(init=False)
    half_layer: fastembed.Embedding = field(init=False)
    frozen_layer: fastembed.Embedding = field(init=False)
    optimizer: fastembed.optim.SparseOptimizer = field(init=False)

    def __post_init__(self) -> None:
        self.quantized = fastembed.quantize(self.finite, 8)
        self.packed = self.quantized.packed
        self.half_layer = fastembed.Embedding(weight=self.half.copy())
        self.optimizer = fastembed.optim.Adam(0.1, stochastic_rounding=True, seed=1)
        self.half_layer(self.ids)
        self.half_layer.backward(self.grad, optimizer=self.optimizer)
        self.half_layer.backward(self.grad)
        self.frozen_layer = fastembed.Embedding.from_pretrained(self.quantized)
        self.frozen_layer(self.ids)

    def state(self) -> dict[str, Any]:
        arrays = {name: v for name, v in vars(self).items() if isinstance(v, np.ndarray)}
        arrays["half_layer.weight"] = self.half_layer.weight
        arrays["half_layer.grad"] = self.half_layer.grad
        for name, array in self.optimizer.state(self.half_layer).items():
            arrays[f"optimizer.{name}"] = array
        return {name: (id(array), array.tobytes()) for name, array in arrays.items()}


def _read_only_half(a: PrecisionArena) -> np.ndarray:
    view = a.half_out.view()
    view.flags.writeable = False
    return view


PRECISION_HOSTILE: list[tuple[str, Callable[[PrecisionArena], Any], type, str]] = [
    ("quantize: NaN", lambda a: fastembed.quantize(a.poisoned, 8), ValueError, r"weight\[1, 2\]"),
    (
        "quantize: infinity",
        lambda a: fastembed.quantize(np.where(a.poisoned != a.poisoned, np.inf, 1.0), 4),
        ValueError,
        r"weight\[1, 2\] = inf",
    ),
    ("quantize: bits 3", lambda a: fastembed.quantize(a.finite, 3), ValueError, "bits.*3"),
    ("quantize: bits '8'", lambda a: fastembed.quantize(a.finite, "8"), TypeError, "'8'"),
    ("quantize: bits 8.0", lambda a: fastembed.quantize(a.finite, 8.0), TypeError, r"8\.0"),
    (
        "quantize: odd dim at 4 bits",
        lambda a: fastembed.quantize(a.finite[:, :3], 4),
        ValueError,
        "even embedding_dim.*3",
    ),
    ("quantize: 1-d", lambda a: fastembed.quantize(a.finite[0], 8), ValueError, "2-d"),
    ("quantize: ints", lambda a: fastembed.quantize(a.ids, 8), TypeError, "int64"),
    (
        "from_fbgemm: too narrow",
        lambda a: fastembed.QuantizedTable.from_fbgemm(a.packed[:, :5].copy(), 8),
        ValueError,
        "width 5 is too small",
    ),
    (
        "from_fbgemm: not uint8",
        lambda a: fastembed.QuantizedTable.from_fbgemm(a.packed.view(np.int8), 8),
        TypeError,
        "uint8.*int8",
    ),
    (
        "from_fbgemm: 3-d",
        lambda a: fastembed.QuantizedTable.from_fbgemm(a.packed.reshape(2, 5, -1), 8),
        ValueError,
        "2-d",
    ),
    (
        "from_fbgemm: strided",
        lambda a: fastembed.QuantizedTable.from_fbgemm(a.packed[::2], 8),
        ValueError,
        "C-contiguous",
    ),
    (
        "from_fbgemm: other embedding_dim",
        lambda a: fastembed.QuantizedTable.from_fbgemm(a.packed, 8, embedding_dim=8),
        ValueError,
        "embedding_dim=8",
    ),
    (
        "from_fbgemm: bits 16",
        lambda a: fastembed.QuantizedTable.from_fbgemm(a.packed, 16),
        ValueError,
        "16",
    ),
    (
        "gather(quantized): id out of range",
        lambda a: fastembed.gather(a.quantized, a.bad_ids, out=a.rows_out),
        IndexError,
        rf"id {V} at ids\[1, 1\]",
    ),
    (
        "gather(quantized): float64 out",
        lambda a: fastembed.gather(a.quantized, a.ids, out=a.rows_out.astype(np.float64)),
        TypeError,
        "out must have dtype float32, got float64",
    ),
    (
        "gather(quantized): out of another shape",
        lambda a: fastembed.gather(a.quantized, a.ids[0], out=a.rows_out),
        ValueError,
        "out must have shape",
    ),
    (
        "gather(quantized): max_norm",
        lambda a: fastembed.gather(a.quantized, a.ids, max_norm=1.0),
        ValueError,
        "read-only",
    ),
    (
        "embedding_bag(quantized): max_norm",
        lambda a: fastembed.embedding_bag(a.quantized, a.ids, mode="sum", max_norm=1.0),
        ValueError,
        "read-only",
    ),
    (
        "embedding_bag(quantized): id out of range",
        lambda a: fastembed.embedding_bag(
            a.quantized, a.bad_ids, mode="sum", out=a.rows_out[0, :2]
        ),
        IndexError,
        rf"id {V}",
    ),
    (
        "embedding_bag(float16): float64 out",
        lambda a: fastembed.embedding_bag(a.half, a.ids, mode="sum", out=np.zeros((2, D))),
        TypeError,
        "out must have dtype float16, got float64",
    ),
    (
        "gather(float16): bfloat16-sized out of another dtype",
        lambda a: fastembed.gather(a.half, a.ids, out=np.zeros((2, 3, D), np.int16)),
        TypeError,
        "out must have dtype float16",
    ),
    (
        "gather(float16): id out of range",
        lambda a: fastembed.gather(a.half, a.bad_ids, out=a.rows_out),
        IndexError,
        rf"id {V}",
    ),
    (
        "scatter_add(float16): float64 out",
        lambda a: fastembed.scatter_add(a.grad.astype(np.float16), a.ids, V, out=np.zeros((V, D))),
        TypeError,
        "out must have dtype float32, float16 or bfloat16 for a float16 input, got float64",
    ),
    (
        "scatter_add(float32 -> float16): read-only out",
        lambda a: fastembed.scatter_add(a.grad, a.ids, V, out=_read_only_half(a)),
        ValueError,
        "read-only",
    ),
    (
        "scatter_add(float32 -> float16): id out of range",
        lambda a: fastembed.scatter_add(a.grad, a.bad_ids, V, out=a.half_out),
        IndexError,
        rf"id {V}",
    ),
    (
        "half layer: float64 grad",
        lambda a: a.half_layer.backward(a.grad.astype(np.float64)),
        TypeError,
        "float16 or float32.*float64",
    ),
    (
        "half layer: float64 grad with an optimizer",
        lambda a: a.half_layer.backward(a.grad.astype(np.float64), optimizer=a.optimizer),
        TypeError,
        "float16 or float32.*float64",
    ),
    (
        "half layer: optimizer with a bad id",
        lambda a: (
            setattr(a.half_layer, "_ids", a.bad_ids),
            a.optimizer.step(a.half_layer, a.grad),
        ),
        IndexError,
        rf"id {V}",
    ),
    (
        "quantized layer: backward once made trainable",
        lambda a: (setattr(a.frozen_layer, "trainable", True), a.frozen_layer.backward(a.grad)),
        TypeError,
        "QuantizedTable cannot be trained",
    ),
    (
        "quantized layer: optimizer",
        lambda a: a.optimizer.step(a.frozen_layer, a.grad),
        TypeError,
        "QuantizedTable, which cannot be trained",
    ),
    (
        "quantized layer: freeze=False",
        lambda a: fastembed.Embedding.from_pretrained(a.quantized, freeze=False),
        ValueError,
        "cannot be trained",
    ),
    (
        "Embedding: unknown dtype",
        lambda a: fastembed.Embedding(V, D, dtype=np.int16),
        TypeError,
        "int16",
    ),
    (
        "optimizer: seed -1",
        lambda a: fastembed.optim.SGD(0.1, stochastic_rounding=True, seed=-1),
        ValueError,
        "seed.*-1",
    ),
    (
        "optimizer: seed 2**64",
        lambda a: fastembed.optim.Adam(stochastic_rounding=True, seed=2**64),
        ValueError,
        "seed",
    ),
    (
        "optimizer: seed string",
        lambda a: fastembed.optim.Adagrad(stochastic_rounding=True, seed="1"),
        TypeError,
        "seed.*'1'",
    ),
]


@pytest.mark.parametrize(
    "name, call, exception, match", PRECISION_HOSTILE, ids=[c[0] for c in PRECISION_HOSTILE]
)
def test_bad_input_to_reduced_precision_tables_writes_nothing(name, call, exception, match):
    arena = PrecisionArena()
    before = arena.state()
    with pytest.raises(exception, match=match) as raised:
        call(arena)
    assert type(raised.value) is exception, f"got {type(raised.value).__name__}: {raised.value}"
    after = arena.state()
    for array_name in before:
        assert after[array_name] == before[array_name], f"{array_name} was changed"
