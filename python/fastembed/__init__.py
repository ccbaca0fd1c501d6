"""fastembed: embedding layers for NumPy at memory speed."""

from ._functional import gather, scatter_add, sparse_grad
from ._memory import set_buffer_cache_limit
from ._threading import _check_environment, get_num_threads, set_num_threads
from .layers import Embedding
from .sparse import RowSparseGrad

__all__ = [
    "Embedding",
    "RowSparseGrad",
    "gather",
    "get_num_threads",
    "scatter_add",
    "set_buffer_cache_limit",
    "set_num_threads",
    "sparse_grad",
]
__version__ = "0.1.0"

_check_environment()
