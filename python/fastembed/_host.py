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
        (``prefetch_bytes``, ``unprefetched_table_bytes``: gathers and bags from a table of
        at most this size do not prefetch, ``pooling_chunk_bytes``, ``streaming_bytes``,
        ``in_order_table_bytes``); ``prefetch``: how far ahead, and into which cache, loops
        over scattered rows prefetch (below); and the constant budgets that fix summation
        orders (``block_sums_budget_bytes``, ``block_sums_per_block_bytes``), the same on
        every host.

        ``prefetch`` is a dict: ``plan``, ``"l2:32:l1"`` say (the cache rows of more than 128
        bytes are prefetched into, the most rows ahead, counted in rows of 256 bytes:
        narrower rows go as many bytes ahead, and the cache rows of 128 bytes or less are
        prefetched into); ``source``: ``"env"``, ``"calibrated"``, ``"default"`` (no
        calibration has run yet), ``"calibrating"`` or ``"fallback"`` (the calibration failed:
        its buffer could not be had, say); ``probe_bytes``, ``calibration_ms``, ``probe_ms``
        (each candidate plan's median time on 256-byte rows) and ``narrow_probe_ms`` (each
        level's on 128-byte rows) from the calibration, empty or 0 without one.

    Notes
    -----
    Read on first use: ``FASTEMBED_L1D_BYTES``, ``FASTEMBED_L2_BYTES`` and
    ``FASTEMBED_L3_BYTES`` (positive byte counts) override the detection; other values are
    ignored. ``FASTEMBED_ISA=baseline`` runs the baseline copies where wider ones would,
    ``FASTEMBED_ISA=avx2`` the AVX2 copies where the pooled loop's AVX-512 one would.

    The prefetch plan is measured, not derived: the first kernel call that reads more bytes
    of scattered rows than the L3 holds first times each candidate plan (the L1 or the L2,
    16, 32 or 64 rows ahead) summing random 256-byte rows of a buffer four times the L3 (64
    to 256 MiB) on all threads, keeps the fastest, then times the L1 and the L2 for 128-byte
    rows at its distance, once per process (about 50 ms; up to 0.5 s where the system is slow
    to hand out the buffer's huge pages). Until then, or if that fails, the plan is
    ``"l2:64:l1"``. ``FASTEMBED_PREFETCH="l2:32:l2"`` (``l1`` or ``l2``, 1 to 256 rows,
    ``l1`` or ``l2``; the last part may be left out, for ``l1``) sets it instead and skips the
    calibration; other values are ignored.

    Results never depend on these sizes, on the copy or on the prefetch plan, only speed does.
    """
    return _core.host_info()
