"""python -m fastembed.examples.word2vec: trains, writes word2vec format, prints neighbours that
make sense on its generated text, plots when asked."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from fastembed.examples import word2vec as example


@pytest.fixture
def generated_only(monkeypatch):
    monkeypatch.setattr(example, "shipped_corpus", lambda: None)


def test_generated_text_gives_topic_neighbours(generated_only, tmp_path, capsys):
    out = tmp_path / "vectors.bin"
    model = example.main(["--out", str(out), "--binary", "--epochs", "2", "--dim", "20", "--quiet"])
    printed = capsys.readouterr().out
    assert "generated text" in printed and str(out) in printed
    topics = {w: t for t, words in example._TOPICS.items() for w in words.split()}
    neighbours = example.nearest_neighbours(model.wv, "cat", 5)
    assert all(topics.get(word) == "animals" for word, _ in neighbours)
    gensim = pytest.importorskip("gensim")
    loaded = gensim.models.KeyedVectors.load_word2vec_format(str(out), binary=True)
    assert loaded.index_to_key == model.wv.index_to_key
    np.testing.assert_array_equal(loaded.vectors, model.wv.vectors)


def test_plot_writes_a_png(generated_only, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "words.png"
    example.main(["--out", str(tmp_path / "v.txt"), "--epochs", "1", "--dim", "8", "--quiet",
                  "--plot", str(png)])  # fmt: skip
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_runs_as_a_module_on_a_given_corpus(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(
        "\n".join(" ".join(s) for s in example.generated_sentences(3000, seed=1)), encoding="utf-8"
    )
    out = tmp_path / "vectors.txt"
    result = subprocess.run(
        [sys.executable, "-m", "fastembed.examples.word2vec", "--corpus", str(corpus), "--out",
         str(out), "--epochs", "1", "--dim", "16", "--sg", "1", "--threads", "2", "--seed", "3"],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    assert "skip-gram, 1 epochs" in result.stdout
    assert "words/s" in result.stderr
    header = out.read_text(encoding="utf-8").splitlines()[0].split()
    assert int(header[1]) == 16 and int(header[0]) > 50
