"""fastembed: embedding layers for NumPy at memory speed."""

from ._functional import gather, scatter_add
from ._memory import set_buffer_cache_limit
from ._threading import _check_environment, get_num_threads, set_num_threads
from .layers import Embedding

__all__ = [
    "Embedding",
    "gather",
    "get_num_threads",
    "scatter_add",
    "set_buffer_cache_limit",
    "set_num_threads",
]
__version__ = "0.1.0"

_check_environment()
