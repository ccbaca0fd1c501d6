"""fastembed: embedding layers for NumPy at memory speed."""

# Loads the OpenBLAS library that the compiled module links against (for topk): imported before
# any module of this package imports _core, so the dynamic loader finds it already loaded.
import scipy_openblas32 as _scipy_openblas32  # noqa: F401

from . import optim, text
from ._bag_functional import (
    embedding_bag,
    embedding_bag_backward,
    embedding_bag_per_sample_weights_backward,
)
from ._functional import gather, scatter_add, sparse_grad
from ._host import host_info
from ._memory import line_aligned_copy, set_buffer_cache_limit
from ._threading import _check_environment, get_num_threads, set_num_threads
from ._topk import topk
from .bag import EmbeddingBag
from .layers import Embedding
from .quantized import QuantizedTable, quantize
from .sparse import RowSparseGrad
from .text import WordVectors

__all__ = [
    "Embedding",
    "EmbeddingBag",
    "QuantizedTable",
    "RowSparseGrad",
    "WordVectors",
    "embedding_bag",
    "embedding_bag_backward",
    "embedding_bag_per_sample_weights_backward",
    "gather",
    "get_num_threads",
    "host_info",
    "line_aligned_copy",
    "optim",
    "quantize",
    "scatter_add",
    "set_buffer_cache_limit",
    "set_num_threads",
    "sparse_grad",
    "text",
    "topk",
]
__version__ = "0.1.0"

_check_environment()
