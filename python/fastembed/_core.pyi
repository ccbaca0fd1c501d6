"""Types of the compiled module; use the wrappers in the fastembed package instead."""

from typing import Any

import numpy as np

def get_num_threads() -> int: ...
def set_num_threads(n: int) -> None: ...
def available_cores() -> int: ...
def host_info() -> dict[str, Any]: ...
def calibrate_prefetch(probe_bytes: int, rows_per_trial: int, rounds: int) -> dict[str, Any]: ...
def set_buffer_cache_limit(nbytes: int) -> int: ...
def empty(shape: list[int] | tuple[int, ...], dtype: np.dtype) -> np.ndarray: ...
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
    padding_idx: int | None = None,
    scale_grad_by_freq: bool = False,
    accumulate: bool = False,
) -> np.ndarray: ...
def sparse_grad(
    grad_output: np.ndarray,
    ids: np.ndarray,
    num_embeddings: int,
    padding_idx: int | None = None,
    scale_grad_by_freq: bool = False,
) -> tuple[np.ndarray, np.ndarray]: ...
def bag_bounds(offsets: np.ndarray, num_ids: int, include_last_offset: bool) -> np.ndarray: ...
def embedding_bag(
    weight: np.ndarray,
    ids: np.ndarray,
    bounds: np.ndarray,
    mode: str,
    per_sample_weights: np.ndarray | None = None,
    padding_idx: int = -1,
    out: np.ndarray | None = None,
    argmax_out: np.ndarray | None = None,
    max_norm: float | None = None,
    norm_type: float = 2.0,
    quantized_bits: int | None = None,
) -> np.ndarray: ...
def embedding_bag_per_sample_weights_backward(
    grad_output: np.ndarray,
    weight: np.ndarray,
    ids: np.ndarray,
    bounds: np.ndarray,
    padding_idx: int = -1,
) -> np.ndarray: ...
def embedding_bag_backward(
    grad_output: np.ndarray,
    ids: np.ndarray,
    bounds: np.ndarray,
    num_embeddings: int,
    mode: str,
    per_sample_weights: np.ndarray | None = None,
    padding_idx: int = -1,
    argmax: np.ndarray | None = None,
    out: np.ndarray | None = None,
    sparse: bool = False,
    accumulate: bool = False,
    scale_grad_by_freq: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]: ...

# (grad_output, ids, bounds or None, mode, per_sample_weights, argmax, padding_idx,
#  scale_grad_by_freq): the last lookup's gradient, plain (bounds None) or pooled.
_Gradient = tuple[
    np.ndarray, np.ndarray, np.ndarray | None, str, np.ndarray | None, np.ndarray | None, int, bool
]

# How updated float16 / bfloat16 values are written: (stochastic, seed, step).
_Rounding = tuple[bool, int, int]

def sgd_update(
    weight: np.ndarray,
    gradient: _Gradient,
    lr: float,
    momentum: float,
    momentum_buffer: np.ndarray | None = None,
    rounding: _Rounding = (False, 0, 0),
) -> None: ...
def adagrad_update(
    weight: np.ndarray,
    gradient: _Gradient,
    lr: float,
    eps: float,
    rowwise: bool,
    state_sum: np.ndarray,
    rounding: _Rounding = (False, 0, 0),
) -> None: ...
def adam_update(
    weight: np.ndarray,
    gradient: _Gradient,
    step_size: float,
    beta1: float,
    beta2: float,
    eps: float,
    exp_avg: np.ndarray,
    exp_avg_sq: np.ndarray,
    rounding: _Rounding = (False, 0, 0),
) -> None: ...
def word2vec_train_batches(
    syn0: np.ndarray,
    syn1neg: np.ndarray,
    corpus_ids: np.ndarray,
    sentence_bounds: np.ndarray,
    keep_probability: np.ndarray,
    negative_weights: np.ndarray,
    *,
    skip_gram: bool,
    window: int,
    negative: int,
    seed: int,
    alpha: float,
    min_alpha: float,
    epochs: int,
    batch_words: int,
    epoch: int,
    first_batch: int,
    last_batch: int,
) -> tuple[float, int, int]: ...

# Routing of a row-sharded table (src/kernels/route.hpp).
def concatenated_rows(
    ids: np.ndarray, num_embeddings: int, num_shards: int, modulo: bool
) -> np.ndarray: ...
def route_distinct(
    ids: np.ndarray, num_embeddings: int, num_shards: int, modulo: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...
def expand_rows(
    answers: list[np.ndarray], offsets: np.ndarray, inverse: np.ndarray, out: np.ndarray
) -> None: ...
def gather_sharded(
    tables: list[np.ndarray], ids: np.ndarray, out: np.ndarray, num_embeddings: int, modulo: bool
) -> None: ...
def read_word2vec(
    file: bytes | memoryview | np.ndarray,
    binary: bool,
    no_header: bool,
    limit: int | None,
    dtype: np.dtype,
) -> tuple[list[str], np.ndarray]: ...
def format_word2vec_text(keys: list[str], vectors: np.ndarray) -> bytes: ...
def check_ids(ids: np.ndarray, num_embeddings: int) -> None: ...
def topk(
    table: np.ndarray,
    queries: np.ndarray,
    k: int,
    metric: str,
    exclude: np.ndarray | None = None,
    ids_out: np.ndarray | None = None,
    scores_out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]: ...
def quantize(weight: np.ndarray, bits: int) -> np.ndarray: ...
def packed_dim(packed: np.ndarray, bits: int) -> int: ...
def dequantize(
    packed: np.ndarray,
    bits: int,
    ids: np.ndarray | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray: ...
