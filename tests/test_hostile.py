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
    layer: fastembed.Embedding = field(init=False)

    def __post_init__(self) -> None:
        self.shared_ids[...] = IDS
        self.layer = fastembed.Embedding(
            weight=np.linspace(0, 1, V * D, dtype=np.float32).reshape(V, D)
        )
        self.layer([[3, 3, 1], [0, 2, 9]])
        self.layer.backward(self.grad.copy())

    @property
    def shared_ids(self) -> np.ndarray:
        return self.shared.reshape(-1).view(np.int64)[:6].reshape(2, 3)

    def state(self) -> dict[str, Any]:
        """Every array the arena holds (the layer's attributes included): identity and bytes."""
        arrays = {
            name: value for name, value in vars(self).items() if isinstance(value, np.ndarray)
        }
        arrays.update(
            {
                f"layer.{name}": value
                for name, value in vars(self.layer).items()
                if isinstance(value, np.ndarray)
            }
        )
        return {name: (id(array), array.tobytes()) for name, array in arrays.items()}


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
    ("float16", lambda a: a.weight.astype(np.float16), TypeError, "float16"),
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
        "out must have dtype float32, got float64",
    ),
    ("float16", lambda a, shape: np.zeros(shape, np.float16), TypeError, "got float16"),
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
HOSTILE += [
    Hostile(
        f"{call_name}: out {name}",
        lambda a, call=call, out=out, shape=shape: call(a, out(a, shape)),
        exception,
        match,
    )
    for name, out, exception, match in BAD_OUTS
    for call_name, call, shape in OUT_CALLS
]
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
    ("float16", lambda a: a.grad.astype(np.float16), TypeError, "float16"),
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
