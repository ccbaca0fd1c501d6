"""From text to vectors: a Keras-style vocabulary and padding, and pretrained word vectors."""

from .vocabulary import Vocabulary, pad_sequences
from .word_vectors import WordVectors

__all__ = ["Vocabulary", "WordVectors", "pad_sequences"]
