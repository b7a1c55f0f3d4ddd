"""Small helpers shared by the search stages (the searcher and the prefetcher)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from mvr.errors import ConfigError

__all__ = ["tick", "check_k", "release_freed_memory", "search_depths"]


def tick(timings: dict[str, float], name: str, t0: float) -> float:
    """Add the seconds since ``t0`` to ``timings[name]``; returns now."""
    t1 = time.perf_counter()
    timings[name] = timings.get(name, 0.0) + t1 - t0
    return t1


def check_k(k: Any, name: str) -> None:
    """Refuse anything but an int >= 1 (bools included) with a ConfigError naming ``name``."""
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ConfigError(f"{name}: expected an int >= 1, got {k!r}")


def search_depths(config: Any, k: int, candidates: Any, rerank_candidates: Any, lists: int,
                  mean_tokens: float) -> tuple[int, int, int]:
    """(first-stage N, list candidates C, approximate-stage N2) of a search, validated:
    ``lists`` is the configured depth of the index's token or centroid lists (0 = none).

    With ``config.candidate_tokens`` (a budget of tokens scored by the approximate
    MaxSim), the configured depths shrink by ``min(1, budget / ((default_candidates +
    lists) * mean_tokens))``: on PyPI's 10-token summaries the 2,000 + 2,000 defaults
    stand, on SciFact's 120-token abstracts they become ~200 + 200. An explicit
    ``candidates`` keeps its N; N stays >= k, C >= 1.
    """
    n = config.default_candidates if candidates is None else candidates
    check_k(n, "candidates")
    budget = getattr(config, "candidate_tokens", 0)
    total = (config.default_candidates + lists) * mean_tokens
    scale = budget / total if budget and total > budget else 1.0
    if candidates is None:
        n = int(n * scale)
    n = max(n, k)
    c = max(int(lists * scale), 1) if lists else 0
    n2 = config.default_rerank if rerank_candidates is None else rerank_candidates
    check_k(n2, "rerank_candidates")
    return n, c, min(max(n2, k), n + c)


_LIBC: Any = None


def release_freed_memory(n_queries: int, at_least: int = 8) -> None:
    """After a batch of at least ``at_least`` queries, hand the heap's free pages back to
    the OS (glibc ``malloc_trim``; nothing elsewhere). A batch's buffers are freed but
    glibc keeps them: on PyPI 701,912 eight batches of 32 left 260 MB resident that one
    trim returned (BENCHMARKS.md "Scale"), which took serving RSS over 2 GB. ~1 ms."""
    global _LIBC
    if n_queries < at_least:
        return
    if _LIBC is None:
        import ctypes
        import ctypes.util

        try:
            lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _LIBC = lib if hasattr(lib, "malloc_trim") else False
        except OSError:
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)
