"""A bag-of-words text classifier trained with NumPy and fastembed, on generated text.

Run it with ``python -m fastembed.examples.text_classifier`` (``--help`` lists the options).

The data are generated, nothing is downloaded: a vocabulary whose word frequencies follow a
Zipf law (as in natural language), and classes each defined by a few dozen topic words. A
document of class c is 12 to 40 words; each word is one of c's topic words with probability
``--topic-rate`` (0.15), else a background word drawn from the Zipf law (which also contains
every topic word, so no single word gives the class away with certainty).

The model is the classic fastText-style classifier::

    ids, offsets --EmbeddingBag(mode="mean")--> (B, D) --linear--> (B, C) --softmax--> p

trained with cross-entropy. The embedding table is updated by a fused sparse optimizer
(``bag.backward(grad, optimizer=fastembed.optim.Adam(...))``): only the rows of the words in
a batch change, and no gradient array for the table is ever formed. The small linear layer is
updated with plain NumPy SGD.

With the defaults (20k words, 8 classes, 20k training documents, 3 epochs) it reaches 97%
test accuracy (seed 0) in under a second of training; ``--small`` (5k words, 4 classes, 4k
documents, 2 epochs) reaches 96% (at least 90% for any seed). Progress goes to stderr, the
final accuracy to stdout.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import numpy as np

import fastembed


def make_corpus(
    rng: np.random.Generator,
    num_docs: int,
    vocab_size: int,
    topics: np.ndarray,
    topic_rate: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``num_docs`` documents as (ids, offsets, labels): document k is
    ``ids[offsets[k]:offsets[k + 1]]`` (the last running to the end)."""
    num_classes, _ = topics.shape
    labels = rng.integers(0, num_classes, num_docs)
    lengths = rng.integers(12, 41, num_docs)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    doc_of_word = np.repeat(np.arange(num_docs), lengths)
    background = (rng.zipf(1.3, doc_of_word.size) - 1) % vocab_size
    topical = topics[labels[doc_of_word], rng.integers(0, topics.shape[1], doc_of_word.size)]
    ids = np.where(rng.random(doc_of_word.size) < topic_rate, topical, background)
    return ids.astype(np.int64), offsets, labels


class Classifier:
    """EmbeddingBag(mean) -> linear -> softmax."""

    def __init__(self, vocab_size: int, dim: int, num_classes: int, seed: int, lr: float) -> None:
        rng = np.random.default_rng(seed)
        self.bag = fastembed.EmbeddingBag(vocab_size, dim, mode="mean", seed=seed)
        self.linear = rng.normal(0.0, 1.0 / np.sqrt(dim), (dim, num_classes)).astype(np.float32)
        self.bias = np.zeros(num_classes, dtype=np.float32)
        self.embedding_optimizer = fastembed.optim.Adam(lr=lr)
        self.linear_lr = 0.5

    def logits(self, ids: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        self.hidden = self.bag(ids, offsets)
        return self.hidden @ self.linear + self.bias

    def train_step(self, ids: np.ndarray, offsets: np.ndarray, labels: np.ndarray) -> float:
        logits = self.logits(ids, offsets)
        logits -= logits.max(axis=1, keepdims=True)
        probabilities = np.exp(logits)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        rows = np.arange(len(labels))
        loss = -np.log(probabilities[rows, labels] + 1e-12).mean()
        grad_logits = probabilities
        grad_logits[rows, labels] -= 1
        grad_logits /= len(labels)
        grad_hidden = grad_logits @ self.linear.T
        self.linear -= self.linear_lr * (self.hidden.T @ grad_logits)
        self.bias -= self.linear_lr * grad_logits.sum(axis=0)
        self.bag.backward(grad_hidden, optimizer=self.embedding_optimizer)
        return float(loss)

    def predict(self, ids: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        return self.logits(ids, offsets).argmax(axis=1)


def batches(offsets: np.ndarray, num_ids: int, batch_size: int):
    """(first doc, end doc, id slice, offsets of the batch relative to its first id)."""
    for first in range(0, len(offsets), batch_size):
        end = min(first + batch_size, len(offsets))
        start_id = offsets[first]
        end_id = offsets[end] if end < len(offsets) else num_ids
        yield first, end, slice(start_id, end_id), offsets[first:end] - start_id


def progress(epoch: int, epochs: int, done: int, total: int, loss: float, quiet: bool) -> None:
    if quiet:
        return
    width = 30
    filled = width * done // max(total, 1)
    bar = "#" * filled + "." * (width - filled)
    end = "\n" if done == total else ""
    sys.stderr.write(f"\repoch {epoch}/{epochs} [{bar}] {done}/{total} loss {loss:.4f}{end}")
    sys.stderr.flush()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocab", type=int, default=20_000, help="vocabulary size")
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--topic-words", type=int, default=40, help="topic words per class")
    parser.add_argument("--topic-rate", type=float, default=0.15)
    parser.add_argument("--dim", type=int, default=32, help="embedding dimension")
    parser.add_argument("--train", type=int, default=20_000, help="training documents")
    parser.add_argument("--test", type=int, default=4_000, help="test documents")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64, help="documents per batch")
    parser.add_argument("--lr", type=float, default=0.02, help="Adam's learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--small", action="store_true", help="5k words, 4 classes, 4k documents, 2 epochs"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.small:
        args.vocab, args.classes, args.train, args.test, args.epochs = 5_000, 4, 4_000, 1_000, 2
    return args


def main(argv: Sequence[str] | None = None) -> float:
    """Train and evaluate; prints and returns the test accuracy."""
    args = parse_args(argv)
    rng = np.random.default_rng(args.seed)
    topics = rng.choice(args.vocab, (args.classes, args.topic_words), replace=False)
    train = make_corpus(rng, args.train, args.vocab, topics, args.topic_rate)
    test = make_corpus(rng, args.test, args.vocab, topics, args.topic_rate)
    model = Classifier(args.vocab, args.dim, args.classes, args.seed, args.lr)

    started = time.perf_counter()
    ids, offsets, labels = train
    num_batches = -(-len(labels) // args.batch)
    for epoch in range(1, args.epochs + 1):
        order = rng.permutation(len(labels))  # shuffle documents, keeping each one's words
        lengths = np.diff(np.append(offsets, len(ids)))[order]
        starts = offsets[order]
        shuffled = np.concatenate([ids[s : s + n] for s, n in zip(starts, lengths)])
        shuffled_offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        shuffled_labels = labels[order]
        loss = 0.0
        for done, (first, end, words, bag_offsets) in enumerate(
            batches(shuffled_offsets, len(shuffled), args.batch), start=1
        ):
            step_loss = model.train_step(shuffled[words], bag_offsets, shuffled_labels[first:end])
            loss = step_loss if done == 1 else 0.98 * loss + 0.02 * step_loss
            if done % 20 == 0 or done == num_batches:
                progress(epoch, args.epochs, done, num_batches, loss, args.quiet)

    test_ids, test_offsets, test_labels = test
    accuracy = float(np.mean(model.predict(test_ids, test_offsets) == test_labels))
    seconds = time.perf_counter() - started
    print(
        f"test accuracy {accuracy:.4f} ({len(test_labels)} documents, trained in {seconds:.2f} s)"
    )
    return accuracy


if __name__ == "__main__":
    main()
