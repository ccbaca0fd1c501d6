"""fastembed.topk against a full NumPy sort of every score, its guarantees and its bad input."""

from __future__ import annotations

import os

import fastembed
import numpy as np
import pytest


def reference(table, queries, k, metric="cosine", exclude=None):
    """Top-k by a stable sort of all scores in float64 (best first, ties by smaller id)."""
    table = np.asarray(table, np.float64)
    queries = np.atleast_2d(np.asarray(queries, np.float64))
    if metric == "cosine":
        row_norms = np.linalg.norm(table, axis=1)
        query_norms = np.linalg.norm(queries, axis=1)
        table = table / np.where(row_norms > 0, row_norms, 1)[:, None]
        queries = queries / np.where(query_norms > 0, query_norms, 1)[:, None]
    scores = queries @ table.T
    if exclude is not None:
        for q, row in enumerate(np.atleast_2d(exclude)):
            scores[q, row[row >= 0]] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, 1)


@pytest.fixture
def rng():
    return np.random.default_rng(1405)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("metric", ["cosine", "dot"])
@pytest.mark.parametrize(
    ("rows", "dim", "num_queries", "k"),
    [(1, 1, 1, 1), (257, 7, 3, 5), (3000, 33, 300, 10), (700, 64, 2, 700)],
)
def test_matches_numpy(rng, dtype, metric, rows, dim, num_queries, k):
    table = rng.standard_normal((rows, dim)).astype(dtype)
    queries = rng.standard_normal((num_queries, dim)).astype(dtype)
    ids, scores = fastembed.topk(table, queries, k, metric=metric)
    assert ids.shape == scores.shape == (num_queries, k)
    assert ids.dtype == np.int64 and scores.dtype == dtype
    expected_ids, expected_scores = reference(table, queries, k, metric)
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(
        scores, expected_scores, rtol=tolerance, atol=tolerance * np.sqrt(dim)
    )
    # Random normal scores have no near ties at these sizes: the ids are exactly the reference's.
    np.testing.assert_array_equal(ids, expected_ids)


def test_ties_by_smaller_id_and_exact_integer_scores():
    # Small integers: every dot product is exact; many rows tie.
    table = np.tile(np.array([[1, 0], [0, 1], [1, 1], [2, 2]], np.float32), (5, 1))
    ids, scores = fastembed.topk(table, np.array([[1, 1]], np.float32), 8, metric="dot")
    np.testing.assert_array_equal(ids[0], [3, 7, 11, 15, 19, 2, 6, 10])
    np.testing.assert_array_equal(scores[0], [4, 4, 4, 4, 4, 2, 2, 2])
    ids, scores = fastembed.topk(table, np.array([[1, 1]], np.float32), 6)  # cosine: 2 and 3 tie
    np.testing.assert_array_equal(ids[0], [2, 3, 6, 7, 10, 11])


def test_single_query_gives_1d_results(rng):
    table = rng.standard_normal((100, 8)).astype(np.float32)
    ids, scores = fastembed.topk(table, table[17], 3)
    assert ids.shape == scores.shape == (3,)
    assert ids[0] == 17 and scores[0] == pytest.approx(1.0, abs=1e-6)
    batch_ids, batch_scores = fastembed.topk(table, table[17:18], 3)
    np.testing.assert_array_equal(ids, batch_ids[0])


def test_exclude(rng):
    table = rng.standard_normal((50, 6))
    queries = table[[3, 9]]
    exclude = np.array([[3, -1, 4], [9, 9, -1]])
    ids, scores = fastembed.topk(table, queries, 5, exclude=exclude)
    expected_ids, expected_scores = reference(table, queries, 5, exclude=exclude)
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-12)
    assert not np.isin(ids[0], [3, 4]).any() and 9 not in ids[1]
    ids, _ = fastembed.topk(table, table[3], 2, exclude=[3])  # 1-d exclude for a 1-d query
    assert 3 not in ids


def test_exclude_leaving_fewer_than_k_rows_pads_with_minus_one():
    table = np.eye(3, dtype=np.float32)
    ids, scores = fastembed.topk(table, [[1, 1, 1]], 3, exclude=[[0, 2]])
    np.testing.assert_array_equal(ids, [[1, -1, -1]])
    assert scores[0, 0] == pytest.approx(1 / np.sqrt(3)) and np.all(scores[0, 1:] == -np.inf)


def test_zero_nan_and_huge_rows():
    table = np.array([[0, 0], [np.nan, 1], [1, 0], [3e30, 0], [-1, 0]], np.float32)
    ids, scores = fastembed.topk(table, [[2, 0], [0, 0]], 5)
    np.testing.assert_array_equal(ids[0], [2, 3, 0, 4, 1])  # 2 and 3 tie at 1; NaN last
    np.testing.assert_allclose(scores[0, :4], [1, 1, 0, -1], atol=1e-6)
    assert np.isnan(scores[0, 4])
    np.testing.assert_array_equal(ids[1], [0, 2, 3, 4, 1])  # a zero query scores 0 everywhere


@pytest.mark.parametrize(("num_queries", "k"), [(1, 10), (600, 4), (3, 2500)])
def test_bitwise_identical_for_any_thread_count(rng, num_queries, k):
    table = rng.standard_normal((5000, 40)).astype(np.float32)
    queries = rng.standard_normal((num_queries, 40)).astype(np.float32)
    previous = fastembed.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3, 8):
            fastembed.set_num_threads(threads)
            results.append(fastembed.topk(table, queries, k))
    finally:
        fastembed.set_num_threads(previous)
    for ids, scores in results[1:]:
        np.testing.assert_array_equal(ids, results[0][0])
        assert scores.tobytes() == results[0][1].tobytes()


def test_out_pair_is_written_and_returned(rng):
    table = rng.standard_normal((40, 5)).astype(np.float32)
    queries = rng.standard_normal((4, 5)).astype(np.float32)
    ids_out = np.empty((4, 3), np.int64)
    scores_out = np.empty((4, 3), np.float32)
    ids, scores = fastembed.topk(table, queries, 3, out=(ids_out, scores_out))
    assert ids is ids_out and scores is scores_out
    expected = fastembed.topk(table, queries, 3)
    np.testing.assert_array_equal(ids_out, expected[0])
    np.testing.assert_array_equal(scores_out, expected[1])
    one_ids, one_scores = np.empty(3, np.int64), np.empty(3, np.float32)
    fastembed.topk(table, queries[1], 3, out=(one_ids, one_scores))
    np.testing.assert_array_equal(one_ids, expected[0][1])


def test_queries_are_converted_and_tables_read_in_place(rng, tmp_path):
    path = tmp_path / "t.npy"
    table = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(30, 4))
    table[:] = rng.standard_normal((30, 4))
    queries64 = rng.standard_normal((2, 4))
    ids, scores = fastembed.topk(table, queries64, 4)  # float64 queries, float32 table
    assert scores.dtype == np.float32
    np.testing.assert_array_equal(ids, fastembed.topk(table, queries64.astype(np.float32), 4)[0])
    ids, _ = fastembed.topk(table, [[1, 0, 0, 0]], 2, metric="dot")  # lists and ints work
    np.testing.assert_array_equal(ids[0], np.argsort(-table[:, 0], kind="stable")[:2])


def test_updated_table_is_never_searched_with_stale_norms(rng):
    table = rng.standard_normal((200, 8)).astype(np.float32)
    query = table[5].copy()
    assert fastembed.topk(table, query, 1)[0][0] == 5
    table[11] = 3 * query  # an in-place update: row 11 is now parallel to the query too
    table[5] *= -1
    ids, scores = fastembed.topk(table, query, 2)
    assert ids[0] == 11 and scores[0] == pytest.approx(1.0, abs=1e-6)


def test_topk_in_forked_child(rng):
    if not hasattr(os, "fork"):
        pytest.skip("no fork")
    table = rng.standard_normal((4000, 16)).astype(np.float32)
    expected = fastembed.topk(table, table[:50], 5)[0]
    pid = os.fork()
    if pid == 0:
        ok = np.array_equal(fastembed.topk(table, table[:50], 5)[0], expected)
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def test_matches_faiss_where_installed(rng):
    faiss = pytest.importorskip("faiss")
    table = rng.standard_normal((2000, 24)).astype(np.float32)
    queries = rng.standard_normal((20, 24)).astype(np.float32)
    index = faiss.IndexFlatIP(24)
    index.add(table)
    distances, labels = index.search(queries, 10)
    ids, scores = fastembed.topk(table, queries, 10, metric="dot")
    np.testing.assert_array_equal(ids, labels)
    np.testing.assert_allclose(scores, distances, rtol=1e-5, atol=1e-5)


# --- bad input: a clear exception, nothing written -------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"k": 0}, ValueError, "k must be"),
        ({"k": 11}, ValueError, "k must be in 1..10"),
        ({"k": -3}, ValueError, "k must be"),
        ({"k": 2.0}, TypeError, "k must be an int"),
        ({"k": True}, TypeError, "k must be an int"),
        ({"k": "3"}, TypeError, "k must be an int"),
        ({"metric": "l2"}, ValueError, "metric must be 'cosine' or 'dot'"),
        ({"metric": None}, ValueError, "metric must be"),
        ({"queries": np.zeros((2, 5), np.float32)}, ValueError, "width 4"),
        ({"queries": np.zeros(5, np.float32)}, ValueError, "width 4"),
        ({"queries": np.zeros((1, 2, 4), np.float32)}, ValueError, "1-d .* or 2-d"),
        ({"queries": np.array([["a", "b", "c", "d"]])}, TypeError, "queries must be real"),
        ({"queries": np.zeros((2, 4), np.complex64)}, TypeError, "queries must be real"),
        ({"exclude": [[10], [0]]}, IndexError, r"exclude id 10 at exclude\[0, 0\]"),
        ({"exclude": [[0], [-2]]}, IndexError, r"exclude id -2 at exclude\[1, 0\]"),
        ({"exclude": [[0.5], [1]]}, TypeError, "integers"),
        ({"exclude": [[0, 1, 2]]}, ValueError, r"exclude must have shape \(2, m\)"),
        ({"exclude": [1, 2]}, ValueError, r"exclude must have shape \(2, m\)"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    call = {"table": np.ones((10, 4), np.float32), "queries": np.ones((2, 4), np.float32), "k": 3}
    call.update(kwargs)
    table, queries, k = call.pop("table"), call.pop("queries"), call.pop("k")
    with pytest.raises(error, match=match):
        fastembed.topk(table, queries, k, **call)


@pytest.mark.parametrize(
    ("table", "error", "match"),
    [
        (np.ones((10, 4), np.int64), TypeError, "table must be float32 or float64"),
        (np.ones((10, 4), np.float16), TypeError, "table must be float32 or float64"),
        ([[1.0, 2.0]], TypeError, "table must be a NumPy array"),
        (np.ones(4, np.float32), ValueError, "table must be 2-d"),
        (np.ones((4, 10), np.float32).T, ValueError, "table must be C-contiguous"),
    ],
)
def test_bad_tables(table, error, match):
    with pytest.raises(error, match=match):
        fastembed.topk(table, np.ones((1, 4)), 1)


def _bad_outs():
    good_ids, good_scores = np.empty((2, 3), np.int64), np.empty((2, 3), np.float32)
    read_only = np.empty((2, 3), np.float32)
    read_only.flags.writeable = False
    shared = np.empty((2, 6), np.int64)
    overlapping = good_ids.view(np.float32).reshape(-1)[:6].reshape(2, 3)
    return [
        ((good_ids,), TypeError, "out must be a pair"),
        (good_ids, TypeError, "out must be a pair"),
        ((good_ids, good_scores.astype(np.float64)), TypeError, "dtype float32"),
        ((good_ids.astype(np.int32), good_scores), TypeError, "dtype int64"),
        ((np.empty((3, 2), np.int64), good_scores), ValueError, r"shape \(2, 3\)"),
        ((good_ids, np.empty((2, 4), np.float32)), ValueError, r"shape \(2, 3\)"),
        ((good_ids, read_only), ValueError, "read-only"),
        ((good_ids, np.empty((3, 2), np.float32).T), ValueError, "C-contiguous"),
        ((shared[:, :3], good_scores), ValueError, "C-contiguous"),
        ((good_ids, good_ids.view(np.float32)[:, :3]), ValueError, "C-contiguous"),
        ((good_ids, good_ids.view(np.float32).reshape(2, 6)[:, ::2]), ValueError, "C-contiguous"),
        ((good_ids, overlapping), ValueError, "overlap"),
    ]


@pytest.mark.parametrize(("out", "error", "match"), _bad_outs())
def test_bad_out_is_refused_before_anything_is_written(out, error, match):
    table = np.ones((10, 4), np.float32)
    queries = np.ones((2, 4), np.float32)
    before = [np.array(a, copy=True) for a in (out if isinstance(out, tuple) else (out,))]
    with pytest.raises(error, match=match):
        fastembed.topk(table, queries, 3, out=out)
    for array, saved in zip(out if isinstance(out, tuple) else (out,), before):
        assert array.tobytes() == saved.tobytes()


def test_bad_exclude_writes_nothing():
    ids_out = np.full((1, 2), 7, np.int64)
    scores_out = np.full((1, 2), 7, np.float32)
    with pytest.raises(IndexError):
        fastembed.topk(
            np.ones((5, 2), np.float32), [[1, 1]], 2, exclude=[[5]], out=(ids_out, scores_out)
        )
    assert (ids_out == 7).all() and (scores_out == 7).all()
