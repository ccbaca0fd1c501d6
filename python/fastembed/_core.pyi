"""Types of the compiled module; use the wrappers in the fastembed package instead."""

import numpy as np

def get_num_threads() -> int: ...
def set_num_threads(n: int) -> None: ...
def available_cores() -> int: ...
def set_buffer_cache_limit(nbytes: int) -> int: ...
def gather(
    weight: np.ndarray,
    ids: np.ndarray,
    out: np.ndarray | None = None,
    *,
    max_norm: float | None = None,
    norm_type: float = 2.0,
) -> np.ndarray: ...
def scatter_add(
    grad_output: np.ndarray,
    ids: np.ndarray,
    num_embeddings: int,
    out: np.ndarray | None = None,
    *,
    padding_idx: int | None = None,
    scale_grad_by_freq: bool = False,
    accumulate: bool = False,
) -> np.ndarray: ...
def sparse_grad(
    grad_output: np.ndarray,
    ids: np.ndarray,
    num_embeddings: int,
    *,
    padding_idx: int | None = None,
    scale_grad_by_freq: bool = False,
) -> tuple[np.ndarray, np.ndarray]: ...
