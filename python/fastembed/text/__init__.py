"""From text to vectors: a Keras-style vocabulary and padding, word vectors, and Word2Vec."""

from .vocabulary import Vocabulary, pad_sequences
from .word2vec import Word2Vec
from .word_vectors import WordVectors

__all__ = ["Vocabulary", "Word2Vec", "WordVectors", "pad_sequences"]
