"""The approximate stage with the SSD reads overlapped (ESPN's prefetch), for
:meth:`serving.Searcher.search` in ``ssd`` mode with centroid lists."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from mvr._multivectors import MultiVectors
from serving._first_stage import top_n
from serving._stages import tick as _tick

__all__ = ["overlapped_candidates"]


def overlapped_candidates(
    searcher: Any, q: MultiVectors, qf: np.ndarray, n: int, n2: int, timings: dict[str, float]
) -> tuple[np.ndarray, dict[int, Any]]:
    """The approximate stage's ``n2`` rows per query, as :meth:`serving.Searcher._approx` over the union of
    the first stage's ``n`` and the centroid lists' candidates gives them (the same
    set: ties by row id), with the SSD reads overlapped (ESPN's prefetch): the lists'
    candidates are scored first and reads of their best ``n2`` start before the FDE
    scan runs; the first stage's rows not among them are scored after it. Returns the
    rows and the reads in flight (:meth:`DiskTokenStore.prefetch`)."""
    from mvr._approx import query_centroid_similarities

    assert searcher._extra_n() > 0 and searcher.codec is not None
    t = time.perf_counter()
    st = query_centroid_similarities(q.vectors, searcher.codec.centroids)
    extra = searcher._extra_candidates(q, st, searcher._filter)
    t = _tick(timings, "centroid_candidates", t)
    prepared = searcher._prepare_pq(q, st)
    sx = searcher._approx_scores(q, st, extra, prepared)
    _, early = top_n(sx, n2, extra)
    handle = searcher.store.prefetch(early[early >= 0])
    t = _tick(timings, "approx_scores", t)
    _, fs_rows = searcher._first_stage(qf, n)
    t = _tick(timings, "first_stage", t)
    fresh = [f[(f >= 0) & ~np.isin(f, e)] for f, e in zip(fs_rows, extra, strict=True)]
    new = np.full((len(fresh), max((len(f) for f in fresh), default=0)), -1, np.int64)
    for i, f in enumerate(fresh):
        new[i, : len(f)] = f
    sn = searcher._approx_scores(q, st, new, prepared)
    _, best = top_n(np.concatenate([sx, sn], axis=1), n2, np.concatenate([extra, new], axis=1))
    _tick(timings, "approx_scores", t)
    return best, handle
