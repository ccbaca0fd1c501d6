"""WordVectors.load_word2vec_format / save_word2vec_format: gensim's shipped files loaded to the
same bits as gensim loads them, gensim's bytes written, numbers rounded as strtof rounds them,
and every malformed file refused with the line named."""

import os
import struct
from fractions import Fraction

import fastembed
import numpy as np
import pytest
from fastembed import WordVectors


def gensim_data(name):
    test_utils = pytest.importorskip("gensim.test.utils")
    return test_utils.datapath(name)


def test_gensim_truncated_file_is_refused():
    """gensim ships pretrained.vec with a header announcing 3 vectors and one line: both refuse."""
    path = gensim_data("pretrained.vec")
    with pytest.raises(ValueError, match="line 3: the file ends after 1 vectors"):
        WordVectors.load_word2vec_format(path)


def write(path, content):
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def assert_same_as_gensim(wv, kv):
    assert wv.index_to_key == kv.index_to_key
    assert wv.vectors.dtype == kv.vectors.dtype
    assert wv.vectors.shape == kv.vectors.shape
    np.testing.assert_array_equal(wv.vectors.view(np.uint8), kv.vectors.view(np.uint8))


@pytest.mark.parametrize(
    "name, options",
    [
        ("word2vec_pre_kv_c", {}),  # the word2vec C tool's text output
        ("euclidean_vectors.bin", {"binary": True}),
        ("lee_fasttext.vec", {}),  # fastText's .vec
        ("toy-model.vec", {}),
        ("crime-and-punishment.vec", {}),  # Cyrillic keys
        ("test_glove.txt", {"no_header": True}),  # GloVe
        ("high_precision.kv.txt", {"dtype": np.float64}),
        ("high_precision.kv.bin", {"binary": True, "dtype": np.float64}),
        ("word2vec_pre_kv_c", {"limit": 7}),
        ("euclidean_vectors.bin", {"binary": True, "limit": 100}),
    ],
)
def test_gensim_files_load_to_the_same_bits(name, options):
    path = gensim_data(name)
    from gensim.models import KeyedVectors

    gensim_options = dict(options)
    if "dtype" in gensim_options:
        gensim_options["datatype"] = gensim_options.pop("dtype")
    kv = KeyedVectors.load_word2vec_format(path, **gensim_options)
    assert_same_as_gensim(WordVectors.load_word2vec_format(path, **options), kv)


@pytest.mark.parametrize("binary", [False, True])
def test_writes_gensim_bytes(tmp_path, binary):
    gensim_models = pytest.importorskip("gensim.models")
    rng = np.random.default_rng(0)
    vectors = (rng.standard_normal((50, 7)) * 10.0 ** rng.integers(-8, 9, (50, 7))).astype(
        np.float32
    )
    vectors[0, :4] = [0.0, -0.0, 1.0, 1e6]
    keys = [f"wörd{i}" for i in range(50)]
    kv = gensim_models.KeyedVectors(7)
    kv.add_vectors(keys, vectors)
    kv.save_word2vec_format(str(tmp_path / "gensim"), binary=binary)
    WordVectors(keys, vectors).save_word2vec_format(tmp_path / "ours", binary=binary)
    assert (tmp_path / "ours").read_bytes() == (tmp_path / "gensim").read_bytes()
    loaded = gensim_models.KeyedVectors.load_word2vec_format(str(tmp_path / "ours"), binary=binary)
    np.testing.assert_array_equal(loaded.vectors, vectors)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_text_numbers_are_numpy_str_and_round_trip(tmp_path, dtype):
    """Random bit patterns (every exponent, denormals, zeros, inf, nan) written as str() of a
    NumPy scalar writes them, and read back to the same bits."""
    rng = np.random.default_rng(1)
    bits = np.uint32 if dtype == np.float32 else np.uint64
    vectors = rng.integers(0, np.iinfo(bits).max, (400, 25), dtype=bits, endpoint=True)
    vectors = vectors.view(dtype)
    vectors[0, :6] = [np.inf, -np.inf, 0.0, -0.0, 1e-4, 1e6]
    vectors[vectors != vectors] = np.nan  # one NaN pattern: "nan" reads back as that one
    keys = [f"k{i}" for i in range(len(vectors))]
    path = tmp_path / "v.txt"
    WordVectors(keys, vectors).save_word2vec_format(path)
    lines = path.read_text().splitlines()
    assert lines[0] == f"{len(keys)} 25"
    for key, row, line in zip(keys, vectors, lines[1:]):
        assert line == " ".join([key] + [str(value) for value in row])
    loaded = WordVectors.load_word2vec_format(path, dtype=dtype)
    assert loaded.index_to_key == keys
    np.testing.assert_array_equal(loaded.vectors.view(bits), vectors.view(bits))


def nearest_float32(text):
    """The correctly rounded float32 of a decimal string (ties to even), from exact fractions."""
    exact = Fraction(text)
    guess = np.float32(float(text))
    candidates = [
        np.nextafter(guess, np.float32(-np.inf)),
        guess,
        np.nextafter(guess, np.float32(np.inf)),
    ]
    best = min(
        candidates,
        key=lambda c: (abs(Fraction(float(c)) - exact), int(np.array(c).view(np.uint32)) & 1),
    )
    return best


def test_text_numbers_rounded_as_strtof(tmp_path):
    rng = np.random.default_rng(2)
    texts = []
    for _ in range(3000):
        digits = "".join(str(d) for d in rng.integers(0, 10, rng.integers(1, 20)))
        texts.append(f"{'-' if rng.random() < 0.5 else ''}0.{digits}e{rng.integers(-40, 39)}")
    # float32 midpoints (exactly halfway, and a hair either side) stress the rounding
    for value in rng.standard_normal(200).astype(np.float32):
        above = np.nextafter(value, np.float32(np.inf))
        midpoint = (Fraction(float(value)) + Fraction(float(above))) / 2
        for nudge in (0, Fraction(1, 10**40), -Fraction(1, 10**40)):
            texts.append(_decimal(midpoint + nudge))
    path = write(tmp_path / "n.txt", f"1 {len(texts)}\nw " + " ".join(texts) + "\n")
    loaded = WordVectors.load_word2vec_format(path).vectors[0]
    expected = np.array([nearest_float32(t) for t in texts], dtype=np.float32)
    np.testing.assert_array_equal(loaded.view(np.uint32), expected.view(np.uint32))


def _decimal(fraction):
    """The exact decimal expansion of a dyadic fraction (as a string)."""
    sign = "-" if fraction < 0 else ""
    fraction = abs(fraction)
    places = 0
    while fraction.denominator != 1:
        fraction *= 10
        places += 1
    digits = str(fraction.numerator).rjust(places + 1, "0")
    return f"{sign}{digits[:-places]}.{digits[-places:]}" if places else sign + digits


def test_special_numbers(tmp_path):
    path = write(
        tmp_path / "s.txt", "1 9\nw +1.5 1e50 -1e50 1e-50 -1e-50 nan -inf Infinity 1e-45\n"
    )
    row = WordVectors.load_word2vec_format(path).vectors[0]
    assert row[0] == 1.5
    assert row[1] == np.inf and row[2] == -np.inf
    assert row[3] == 0 and not np.signbit(row[3]) and row[4] == 0 and np.signbit(row[4])
    assert np.isnan(row[5]) and row[6] == -np.inf and row[7] == np.inf
    assert row[8] == np.float32(1e-45)  # the smallest denormal


def test_lenient_layout(tmp_path):
    """CRLF line ends, trailing spaces (the C tool writes one), tabs or runs of spaces between
    numbers, blank lines at the end, the C tool's newline after each binary vector."""
    path = write(tmp_path / "t.txt", "2 3\r\nä 1 2\t3 \r\nb  4 5 6\r\n\r\n\n")
    wv = WordVectors.load_word2vec_format(path)
    assert wv.index_to_key == ["ä", "b"]
    np.testing.assert_array_equal(wv.vectors, [[1, 2, 3], [4, 5, 6]])
    rows = np.arange(6, dtype=np.float32).reshape(2, 3)
    c_tool = b"2 3\n" + b"".join(k + b" " + r.tobytes() + b"\n" for k, r in zip([b"x", b"y"], rows))
    wv = WordVectors.load_word2vec_format(write(tmp_path / "c.bin", c_tool), binary=True)
    assert wv.index_to_key == ["x", "y"]
    np.testing.assert_array_equal(wv.vectors, rows)


def test_no_header(tmp_path):
    path = write(tmp_path / "glove.txt", "the 1 2\nof 3 4\n\n")
    wv = WordVectors.load_word2vec_format(path, no_header=True)
    assert wv.index_to_key == ["the", "of"] and wv.vector_size == 2
    assert WordVectors.load_word2vec_format(path, no_header=True, limit=1).index_to_key == ["the"]


def test_limit_and_dtype(tmp_path):
    vectors = np.arange(20, dtype=np.float32).reshape(5, 4) / 7
    keys = list("abcde")
    for binary in (False, True):
        path = tmp_path / f"v{binary}"
        WordVectors(keys, vectors).save_word2vec_format(path, binary=binary)
        two = WordVectors.load_word2vec_format(path, binary=binary, limit=2)
        assert two.index_to_key == ["a", "b"]
        np.testing.assert_array_equal(two.vectors, vectors[:2])
        wide = WordVectors.load_word2vec_format(path, binary=binary, dtype=np.float64)
        assert wide.vectors.dtype == np.float64
        # text: the decimals written, read as doubles; binary: the float32s widened
        expected = [[float(str(v)) for v in row] for row in vectors] if not binary else vectors
        np.testing.assert_array_equal(wide.vectors, np.array(expected, dtype=np.float64))
        assert len(WordVectors.load_word2vec_format(path, binary=binary, limit=0)) == 0
    with pytest.raises(TypeError, match="dtype"):
        WordVectors.load_word2vec_format(path, dtype=np.int32)
    with pytest.raises(ValueError, match="limit"):
        WordVectors.load_word2vec_format(path, limit=-1)


def test_duplicate_keys_keep_the_first(tmp_path):
    path = write(tmp_path / "d.txt", "3 1\na 1\nb 2\na 3\n")
    wv = WordVectors.load_word2vec_format(path)
    assert wv.index_to_key == ["a", "b"]
    np.testing.assert_array_equal(wv.vectors, [[1], [2]])


def test_compressed(tmp_path):
    import gzip

    path = tmp_path / "v.txt.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"1 2\nz 1 2\n")
    assert WordVectors.load_word2vec_format(path).index_to_key == ["z"]


def test_same_result_for_any_thread_count(tmp_path):
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((3000, 16)).astype(np.float32)
    path = tmp_path / "v.txt"
    WordVectors([f"w{i}" for i in range(3000)], vectors).save_word2vec_format(path)
    bad = path.read_text().splitlines()
    bad[100] += " 1"
    bad[2000] = "x 1"
    write(tmp_path / "bad.txt", "\n".join(bad))
    before = fastembed.get_num_threads()
    try:
        for threads in (1, 2, 5):
            fastembed.set_num_threads(threads)
            np.testing.assert_array_equal(WordVectors.load_word2vec_format(path).vectors, vectors)
            with pytest.raises(ValueError, match="line 101: expected 16 numbers .* found 17"):
                WordVectors.load_word2vec_format(tmp_path / "bad.txt")
    finally:
        fastembed.set_num_threads(before)


BAD_TEXT = [
    ("", "line 1: the header"),
    ("3\na 1\n", "line 1: the header"),
    ("2 x\na 1\n", "line 1: the header"),
    ("1 2 3\na 1 2\n", "line 1: the header"),
    ("-1 2\n", "line 1: the header"),
    ("3 2\na 1 2\nb 3 4\n", "line 4: the file ends after 2 vectors, but its header announces 3"),
    ("1 2\na 1 2\nb 3 4\n", "line 3: more lines than the 1 vectors"),
    ("2 2\na 1 2\nb 3\n", "line 3: expected 2 numbers after the key 'b', found 1"),
    ("2 2\na 1 2\n\nb 1 2\n", "line 3: expected 2 numbers after the key '', found 0"),
    ("2 2\na 1 2\nb 3 4 5\n", "line 3: expected 2 numbers after the key 'b', found 3"),
    ("2 2\na 1 2\nb 3 x4\n", "line 3: 'x4' .* is not a number"),
    ("2 2\na 1 2\nb 3 1,5\n", "line 3: '1,5' .* is not a number"),
    ("2 2\na 1 2\nb 3 0x10\n", "line 3: '0x10' .* is not a number"),
    (b"2 2\na 1 2\nb\xff 3 4\n", r"line 3: the key 'b\\xff' is not valid UTF-8"),
    (b"1 2\n\xed\xa0\x80 3 4\n", "line 2: the key .* is not valid UTF-8"),  # a surrogate
    ("1 1000000000000\na 1\n", "line 2: expected 1000000000000 numbers"),
    ("1000000000000 2\na 1 2\n", "line 3: the file ends after 1 vectors, but its header announces"),
    ("99999999999999999999999 2\na 1 2\n", "line 1: the header"),
]


@pytest.mark.parametrize("content, message", BAD_TEXT)
def test_bad_text_files(tmp_path, content, message):
    path = write(tmp_path / "bad.txt", content)
    with pytest.raises(ValueError, match=message) as error:
        WordVectors.load_word2vec_format(path)
    assert str(path) in str(error.value)


def binary_file(*entries, header=None):
    body = b"".join(
        key + b" " + np.asarray(vector, np.float32).tobytes() for key, vector in entries
    )
    count = len(entries)
    return (header or f"{count} 2\n".encode()) + body


BAD_BINARY = [
    (
        binary_file((b"a", [1, 2]), (b"b", [3, 4]))[:-3],
        "line 3: the file ends inside the vector of the key 'b'",
    ),
    (binary_file((b"a", [1, 2]), header=b"2 2\n"), "line 3: the file ends before vector 2"),
    (
        binary_file((b"a", [1, 2]), (b"b", [3, 4]), header=b"1 2\n"),
        "line 3: more data after the 1 vectors",
    ),
    (binary_file((b"a\xc3", [1, 2])), r"line 2: the key 'a\\xc3' is not valid UTF-8"),
    (binary_file((b"a", [1, 2]), header=b"one 2\n"), "line 1: the header"),
]


@pytest.mark.parametrize("content, message", BAD_BINARY)
def test_bad_binary_files(tmp_path, content, message):
    path = write(tmp_path / "bad.bin", content)
    with pytest.raises(ValueError, match=message):
        WordVectors.load_word2vec_format(path, binary=True)


def test_binary_reads_what_struct_writes(tmp_path):
    content = (
        b"2 3\n" + b"k1 " + struct.pack("<3f", 1.5, -2, 3) + b"k2 " + struct.pack("<3f", 0, 0.25, 9)
    )
    wv = WordVectors.load_word2vec_format(write(tmp_path / "s.bin", content), binary=True)
    np.testing.assert_array_equal(wv.vectors, [[1.5, -2, 3], [0, 0.25, 9]])
    with pytest.raises(ValueError, match="no_header"):
        WordVectors.load_word2vec_format(tmp_path / "s.bin", binary=True, no_header=True)


def test_save_refuses_unwritable_keys_and_keeps_the_old_file(tmp_path):
    path = write(tmp_path / "keep.txt", "old")
    for key in ["two words", "", "new\nline"]:
        with pytest.raises(ValueError, match="cannot be written"):
            WordVectors(["a", key], np.zeros((2, 2), np.float32)).save_word2vec_format(path)
        assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["keep.txt"]


def test_save_load_round_trip_float64_and_int_keys(tmp_path):
    vectors = np.random.default_rng(4).standard_normal((4, 3))
    wv = WordVectors([10, 11, 12, 13], vectors)
    for binary in (False, True):
        path = tmp_path / f"r{binary}"
        wv.save_word2vec_format(path, binary=binary)
        back = WordVectors.load_word2vec_format(path, binary=binary, dtype=np.float64)
        assert back.index_to_key == ["10", "11", "12", "13"]
        expected = vectors.astype(np.float32) if binary else vectors
        np.testing.assert_array_equal(back.vectors, expected)
