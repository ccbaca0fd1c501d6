"""fastembed.WordVectors: the key <-> row mapping, lookups, ids and the Embedding view."""

import fastembed
import numpy as np
import pytest
from fastembed import WordVectors


def small():
    keys = ["the", "cat", "sat", "mat"]
    vectors = np.arange(12, dtype=np.float32).reshape(4, 3)
    return WordVectors(keys, vectors), vectors


def test_attributes_and_no_copy():
    wv, vectors = small()
    assert wv.vectors is vectors
    assert wv.index_to_key == ["the", "cat", "sat", "mat"]
    assert wv.key_to_index == {"the": 0, "cat": 1, "sat": 2, "mat": 3}
    assert wv.vector_size == 3 and len(wv) == 4
    assert fastembed.WordVectors is fastembed.text.WordVectors


def test_lookups():
    wv, vectors = small()
    np.testing.assert_array_equal(wv["sat"], vectors[2])
    assert np.shares_memory(wv["sat"], vectors)
    both = wv[["mat", "the", "mat"]]
    np.testing.assert_array_equal(both, vectors[[3, 0, 3]])
    assert both.shape == (3, 3) and both.dtype == np.float32
    assert wv[[]].shape == (0, 3)
    vectors[2] = 7.0  # the table itself: writes are seen
    np.testing.assert_array_equal(wv["sat"], [7.0, 7.0, 7.0])


def test_membership_and_get_index_as_gensim():
    wv, _ = small()
    assert "cat" in wv and "dog" not in wv
    assert wv.get_index("mat") == 3
    assert wv.get_index("dog", default=-1) == -1
    assert wv.get_index(2) == 2  # gensim: an int in range is its own row
    with pytest.raises(KeyError, match="dog"):
        wv.get_index("dog")
    with pytest.raises(KeyError, match="dog"):
        wv["dog"]
    with pytest.raises(KeyError, match="dog"):
        wv[["cat", "dog"]]


def test_same_as_gensim_keyed_vectors():
    gensim_models = pytest.importorskip("gensim.models")
    wv, vectors = small()
    kv = gensim_models.KeyedVectors(3)
    kv.add_vectors(wv.index_to_key, vectors)
    for key in ["the", "mat", 1, "dog", 4, -1]:
        assert (key in wv) == (key in kv), key
        assert wv.get_index(key, -7) == kv.get_index(key, -7), key
    np.testing.assert_array_equal(wv[["cat", "the"]], kv[["cat", "the"]])


def test_memmap_table(tmp_path):
    path = tmp_path / "t.npy"
    np.save(path, np.arange(6, dtype=np.float32).reshape(3, 2))
    table = np.load(path, mmap_mode="r")
    wv = WordVectors(["a", "b", "c"], table)
    assert wv.vectors is table
    np.testing.assert_array_equal(wv[["c", "a"]], [[4, 5], [0, 1]])


def test_bad_construction():
    with pytest.raises(ValueError, match="3 keys for 2 rows"):
        WordVectors(["a", "b", "c"], np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="'a' occurs more than once"):
        WordVectors(["a", "b", "a"], np.zeros((3, 2), np.float32))
    with pytest.raises(TypeError, match="vectors must be float32 or float64"):
        WordVectors(["a"], np.zeros((1, 2), np.int32))
    with pytest.raises(ValueError, match="2-d"):
        WordVectors(["a"], np.zeros(2, np.float32))
    wv = WordVectors(["a", "b"], [[1, 2], [3, 4]])
    assert wv.vectors.dtype == np.float32


def test_ids():
    wv, _ = small()
    assert wv.ids("the cat sat on the mat").tolist() == [0, 1, 2, 0, 3]
    assert wv.ids(["the", "dog", "mat"]).tolist() == [0, 3]
    assert wv.ids(["the", "dog", "mat"], oov="cat").tolist() == [0, 1, 3]
    assert wv.ids(["dog"], oov=2).tolist() == [2]
    nested = wv.ids([["the", "cat"], ["dog", "mat"]])
    assert [row.tolist() for row in nested] == [[0, 1], [3]]
    assert wv.ids([]).dtype == np.int64
    with pytest.raises(KeyError, match="unk"):
        wv.ids(["the"], oov="<unk>")


def test_embedding_view():
    wv, vectors = small()
    emb = wv.embedding()
    assert emb.weight is vectors and not emb.trainable
    np.testing.assert_array_equal(emb(wv.ids("cat mat")), vectors[[1, 3]])
    assert emb.backward(np.ones((2, 3), np.float32)) is None
    trainable = wv.embedding(trainable=True, padding_idx=0)
    assert trainable.trainable and trainable.padding_idx == 0
