"""``Searcher.search(..., filter=..., hybrid=...)``: filtered and hybrid search.

A filter becomes a boolean row mask (:func:`serving.filter_mask`) ANDed with the
tombstones, and is applied *before* candidates are cut: the first stage searches
only allowed rows, so a filter that keeps 1% of the corpus still yields the top-k
among that 1%. When few rows are allowed the first stage is skipped: at most
``SELECTIVE_FACTOR`` times the number of documents a search re-ranks exactly, they are
all re-ranked exactly (no approximation; the work stays within ``SELECTIVE_FACTOR``
times an unfiltered search's however selective the filter); see :func:`dense_search`.

Hybrid search (:mod:`serving._hybrid`) takes the late-interaction top ``depth`` and
the BM25 top ``depth`` under the same mask, scores the union with both signals and
fuses them.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from mvr._multivectors import MultiVectors
from mvr._protocols import SearchResults
from mvr.errors import ConfigError, InvalidInputError
from serving._filters import filter_mask
from serving._first_stage import top_n
from serving._hybrid import HybridConfig, fuse, parse_hybrid

__all__ = ["SELECTIVE_FACTOR", "search_filtered", "allowed_rows", "dense_search", "filtered_path"]

SELECTIVE_FACTOR = 4  # allowed rows <= this x N: exact re-rank of them all, no first stage


def _tick(timings: dict[str, float], name: str, t0: float) -> float:
    t1 = time.perf_counter()
    timings[name] = timings.get(name, 0.0) + t1 - t0
    return t1


def _check_k(k: Any, name: str) -> None:
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ConfigError(f"{name}: expected an int >= 1, got {k!r}")


def allowed_rows(searcher: Any, filter: Any) -> np.ndarray:
    """The live rows a filter keeps. Shape: (n_rows,) bool (tombstoned rows False)."""
    mask = np.asarray(searcher.allowed, dtype=bool)
    if filter is None:
        return mask.copy()
    return mask & filter_mask(searcher, filter)


def search_filtered(
    searcher: Any, queries: Any, *, k: int, candidates: int | None, rerank: bool,
    filter: Any = None, hybrid: Any = None, **depths: Any,
) -> SearchResults:
    """:meth:`serving.Searcher.search` with a filter and/or hybrid fusion (see the module)."""
    _check_k(k, "k")
    n, _ = searcher._depths(k, candidates, None)  # the default N within the token budget
    timings: dict[str, float] = {}
    t = time.perf_counter()
    config = None if hybrid is None or hybrid is False else parse_hybrid(hybrid)
    texts = _texts(queries) if config is not None else None
    allowed = allowed_rows(searcher, filter)
    t = _tick(timings, "filter", t)
    q = searcher._query_vectors(queries)
    _tick(timings, "encode", t)
    if config is None:
        res = dense_search(searcher, q, k, n, rerank, allowed, timings, depths)
    else:
        assert texts is not None
        res = hybrid_search(searcher, q, texts, k, n, rerank, allowed, config, timings, depths)
    searcher._count(len(q), timings)
    return res


def _texts(queries: Any) -> list[str]:
    if isinstance(queries, str):
        return [queries]
    if isinstance(queries, (list, tuple)) and queries and all(isinstance(x, str) for x in queries):
        return list(queries)
    raise InvalidInputError(
        f"hybrid search needs query texts (BM25 tokenizes them), got {type(queries).__name__}"
    )


def _empty(n_q: int, timings: dict[str, float]) -> SearchResults:
    return SearchResults(ids=[[] for _ in range(n_q)],
                         scores=[np.zeros(0, np.float32) for _ in range(n_q)], timings=timings)


def dense_search(
    searcher: Any, q: MultiVectors, k: int, n: int, rerank: bool, allowed: np.ndarray,
    timings: dict[str, float], depths: dict[str, Any] | None = None,
) -> SearchResults:
    """Late-interaction top-``k`` among the ``allowed`` rows (shape (n_rows,) bool).

    Which path runs depends on how many rows are allowed, against the number of
    documents an unfiltered search scores exactly (``n_exact``: the approximate stage's
    ``rerank_candidates`` on indexes with centroid ids, else N):

    * at most ``SELECTIVE_FACTOR * n_exact``: exact MaxSim of every allowed row;
    * with centroid ids, at most ``SELECTIVE_FACTOR * N``: the allowed rows are the
      candidates (no first stage), narrowed by the approximate MaxSim, then exact;
    * otherwise the first stage searches the allowed rows only (a mask, or faiss's
      ``IDSelectorBitmap``), and the search goes on as an unfiltered one.
    """
    n_allowed = int(allowed.sum())
    if n_allowed == 0:
        return _empty(len(q), timings)
    path, n2 = filtered_path(searcher, n_allowed, k, n, rerank, depths)
    t = time.perf_counter()
    if path == "exact":  # exact MaxSim of every allowed row
        rows = np.flatnonzero(allowed).astype(np.int64)
        return searcher._rerank_rows(q, np.broadcast_to(rows, (len(q), len(rows))), k, timings)
    if path == "allowed_candidates":  # allowed rows = candidates
        rows = np.ascontiguousarray(np.broadcast_to(np.flatnonzero(allowed).astype(np.int64),
                                                    (len(q), n_allowed)))
        rows = searcher._approx(q, rows, n2, allowed=False)  # every allowed row is in
        _tick(timings, "approx", t)
        return searcher._rerank_rows(q, rows, k, timings)
    mask = None if allowed.all() else allowed
    qf = searcher._query_fdes(q)
    t = _tick(timings, "query_fde", t)
    handle = None
    if rerank and searcher._prefetcher is not None:
        handle = searcher._prefetcher.start(qf, n, allowed=mask)
        t = _tick(timings, "coarse_prefetch", t)
    fs_scores, fs_rows = searcher.first_stage.search(qf, n if rerank else k, allowed=mask)
    t = _tick(timings, "first_stage", t)
    if not rerank:
        flat_offsets = np.arange(0, fs_rows.size + 1, fs_rows.shape[1], dtype=np.int64)
        ids, scores = searcher._top_k(fs_scores.reshape(-1), fs_rows.reshape(-1), flat_offsets, k)
        return SearchResults(ids=ids, scores=scores, timings=timings)
    if hasattr(searcher, "_approx"):  # centroid ids: keeps the best n2 (a no-op without)
        fs_rows = searcher._approx(q, fs_rows, n2, allowed=allowed)
        _tick(timings, "approx", t)
    return searcher._rerank_rows(q, fs_rows, k, timings, handle)


def filtered_path(
    searcher: Any, n_allowed: int, k: int, n: int, rerank: bool = True,
    depths: dict[str, Any] | None = None,
) -> tuple[str, int]:
    """Which path :func:`dense_search` takes for ``n_allowed`` rows: ``"exact"``,
    ``"allowed_candidates"`` or ``"first_stage"``, and the approximate stage's depth."""
    approx = getattr(searcher, "_cids", None) is not None and hasattr(searcher, "_approx")
    n2 = n
    if approx:
        _, n2 = searcher._depths(k, n, (depths or {}).get("rerank_candidates"))
    if rerank and n_allowed <= SELECTIVE_FACTOR * min(n, n2):
        return "exact", n2
    if rerank and approx and n_allowed <= SELECTIVE_FACTOR * n:
        return "allowed_candidates", n2
    return "first_stage", n2


def hybrid_search(
    searcher: Any, q: MultiVectors, texts: list[str], k: int, n: int, rerank: bool,
    allowed: np.ndarray, config: HybridConfig, timings: dict[str, float],
    depths: dict[str, Any] | None = None,
) -> SearchResults:
    """Fused BM25 + late-interaction top-``k`` among the ``allowed`` rows."""
    from serving._bm25 import index_bm25

    bm25 = index_bm25(searcher)
    depth = max(config.depth, k)
    dense = dense_search(searcher, q, depth, max(n, depth), rerank, allowed, timings, depths)
    t = time.perf_counter()
    cand_rows, late_lists, bm25_lists = [], [], []
    for i, text in enumerate(texts):
        s = bm25.scores(text)
        s_masked = np.where(allowed & (s > 0), s, -np.inf)
        m = min(depth, int(np.isfinite(s_masked).sum()))
        # ties at the cut go to the lower row (as a sharded search cuts: serving._sharded_filtered)
        top = top_n(s_masked[None, :], m)[1][0] if m else np.zeros(0, np.int64)
        d_rows = np.asarray([searcher._id_to_row[d] for d in dense.ids[i]], dtype=np.int64)
        rows = np.unique(np.concatenate([d_rows, top.astype(np.int64)]))
        late = np.full(len(rows), np.nan)
        late[np.searchsorted(rows, d_rows)] = dense.scores[i]
        b = np.full(len(rows), np.nan)
        if config.rescore:
            b = np.where(s[rows] > 0, s[rows], 0.0).astype(np.float64)
        else:
            b[np.searchsorted(rows, top)] = s[top]
        cand_rows.append(rows)
        late_lists.append(late)
        bm25_lists.append(b)
    t = _tick(timings, "bm25", t)
    if config.rescore and rerank:
        _rescore_late(searcher, q, cand_rows, late_lists)
        t = _tick(timings, "rescore", t)
    ids, scores = [], []
    for rows, late, b in zip(cand_rows, late_lists, bm25_lists, strict=True):
        top_rows, fused = fuse(rows, late, b, config, k)
        ids.append([searcher.ids[r] for r in top_rows.tolist()])
        scores.append(fused.astype(np.float32))
    _tick(timings, "fusion", t)
    return SearchResults(ids=ids, scores=scores, timings=timings)


def _rescore_late(
    searcher: Any, q: MultiVectors, cand_rows: list[np.ndarray], late_lists: list[np.ndarray]
) -> None:
    """Exact MaxSim of the candidates that only BM25 found (fills the nan entries)."""
    need = [np.flatnonzero(np.isnan(late)) for late in late_lists]
    flat = np.concatenate([r[idx] for r, idx in zip(cand_rows, need, strict=True)])
    if flat.size == 0:
        return
    offsets = np.zeros(len(need) + 1, dtype=np.int64)
    np.cumsum([len(x) for x in need], out=offsets[1:])
    docs = searcher._fetch(flat)
    s = np.asarray(searcher._score(q, docs, offsets), dtype=np.float64)
    for i, idx in enumerate(need):
        late_lists[i][idx] = s[offsets[i] : offsets[i + 1]]
