"""What the kernels know about the host: its cache sizes, read once per process."""

from __future__ import annotations

from typing import Any

from . import _core


def host_info() -> dict[str, Any]:
    """The cache sizes the kernels use, where they came from, and what is derived from them.

    Returns
    -------
    dict
        ``l1d_bytes``, ``l2_bytes``, ``l3_bytes``: the sizes used; ``source``: where each came
        from (``env``, ``sysfs``, ``cpuid`` or ``fallback``; ``capped`` when the L3 was cut to
        16 MiB per usable core); ``sysfs`` and ``cpuid``: what each reported (0: nothing);
        ``available_cores``; ``isa``: the widest copy of the instruction-bound kernels that runs
        (``"avx512"``, for the pooled loop only, ``"avx2"`` or ``"baseline"``); the budgets
        derived from the sizes, which change speed only
        (``prefetch_bytes``, ``pooling_chunk_bytes``, ``streaming_bytes``,
        ``in_order_table_bytes``); and the constant budgets that fix summation orders
        (``block_sums_budget_bytes``, ``block_sums_per_block_bytes``), the same on every host.

    Notes
    -----
    Read on first use: ``FASTEMBED_L1D_BYTES``, ``FASTEMBED_L2_BYTES`` and
    ``FASTEMBED_L3_BYTES`` (positive byte counts) override the detection; other values are
    ignored. ``FASTEMBED_ISA=baseline`` runs the baseline copies where wider ones would,
    ``FASTEMBED_ISA=avx2`` the AVX2 copies where the pooled loop's AVX-512 one would.
    Results never depend on these sizes or on the copy, only speed does.
    """
    return _core.host_info()
