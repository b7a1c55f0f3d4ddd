"""Filtered and hybrid search over shards: exactly the single process's answers.

:func:`serving._filtered_search.search_filtered` picks one of three paths from the
number of rows the filter keeps, and hybrid search fuses that dense top ``depth`` with
the BM25 top ``depth`` under the same filter. Over shards, each step is a fan-out whose
merge is the single process's cut (every cut orders by score, then the lower row)::

    count    each shard: its live rows the filter keeps -> the global count picks the
             path as serving._filtered_search.filtered_path does
    exact        each shard: exact MaxSim of all its allowed rows, its top k -> merge
    allowed_candidates
                 each shard: approximate MaxSim of all its allowed rows, its top N2
                 -> merge -> exact MaxSim of those (by their shards) -> top k
    first_stage  the unfiltered sharded search, every shard's first stage and centroid
                 lists restricted to its allowed rows
    hybrid   the dense top ``depth`` as above; each shard: the BM25 top ``depth`` of
             its allowed rows (and the BM25 scores of the dense rows it holds) -> merge;
             exact MaxSim of the BM25-only rows (rescoring) -> fuse (serving._hybrid)

BM25 scores are per segment (each segment keeps its own statistics, see
:mod:`serving._bm25`), so a shard's scores are the single process's. The filter is
parsed and type-checked once by the ingress against the field types of every segment
(read from the metadata files' schemas), and evaluated by each shard over its own
segments' columns; a shard down is a 503, or with ``partial_results`` the other
shards' answer flagged partial, as for plain search.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from mvr._filters import parse_filter
from mvr._multivectors import MultiVectors
from mvr.errors import CorruptIndexError
from serving._filtered_search import SELECTIVE_FACTOR, _texts
from serving._first_stage import merge_top_n, top_n
from serving._hybrid import HybridConfig, fuse, parse_hybrid
from serving._stages import check_k, tick

__all__ = ["search_filtered", "index_field_types", "shard_mask", "shard_exact_all",
           "shard_approx_all", "shard_bm25"]


# ---------------------------------------------------------------------- shard side
def shard_mask(shard: Any, tree: Any) -> np.ndarray:
    """The shard's live rows that the parsed filter ``tree`` keeps (None: every live
    row). Shape: (shard rows,) bool, local rows."""
    from serving._filters import _eval
    from serving._metadata import index_metadata

    s = shard.searcher
    live = np.asarray(s.allowed, dtype=bool)
    if tree is None:
        return live.copy()
    return live & _eval(tree, index_metadata(s), s._id_to_row)


def _allowed_global(shard: Any, tree: Any) -> np.ndarray:
    return np.flatnonzero(shard_mask(shard, tree)).astype(np.int64) + shard.base


def shard_exact_all(shard: Any, q: MultiVectors, tree: Any, k: int) -> dict[str, Any]:
    """Exact MaxSim of every allowed row; the top ``k`` per query (global rows, -1 pads)
    with their ids."""
    rows = _allowed_global(shard, tree)
    if not rows.size:
        return {"scores": np.zeros((len(q), 0), np.float32), "rows": np.zeros((len(q), 0), np.int64),
                "ids": {}}
    wide = np.ascontiguousarray(np.broadcast_to(rows, (len(q), len(rows))))
    s, r = top_n(shard.exact(q, wide)["scores"], k, wide)
    held = np.unique(r[r >= 0])
    return {"scores": s, "rows": r, "ids": dict(zip(held.tolist(), shard.ids_of(held), strict=True))}


def shard_approx_all(shard: Any, q: MultiVectors, tree: Any, n2: int) -> dict[str, Any]:
    """Approximate MaxSim of every allowed row (the searcher's own: centroid ids refined
    by the approximate codes); the top ``n2`` per query (global rows, -1 pads)."""
    from mvr._approx import query_centroid_similarities

    s = shard.searcher
    rows = _allowed_global(shard, tree)
    if not rows.size:
        return {"scores": np.zeros((len(q), 0), np.float32), "rows": np.zeros((len(q), 0), np.int64)}
    local = np.ascontiguousarray(np.broadcast_to(rows - shard.base, (len(q), len(rows))))
    st = query_centroid_similarities(q.vectors, s.codec.centroids)
    scores = np.asarray(s._approx_scores(q, st, local), dtype=np.float32)
    sc, r = top_n(scores, n2, local + shard.base)
    return {"scores": sc, "rows": r}


def shard_bm25(shard: Any, texts: list[str], tree: Any, depth: int,
               rows: np.ndarray) -> dict[str, Any]:
    """Per query text: the BM25 top ``depth`` of the allowed rows with a positive score
    (ties by the lower row; global rows, scores, ids), and the BM25 scores of the global
    ``rows`` (shape (n_q, m), -1 pads) that this shard holds."""
    from serving._bm25 import index_bm25

    s = shard.searcher
    bm25 = index_bm25(s)
    mask = shard_mask(shard, tree)
    n_local = len(s.ids)
    tops, held = [], []
    for i, text in enumerate(texts):
        sc = bm25.scores(text)
        masked = np.where(mask & (sc > 0), sc, -np.inf)
        m = min(depth, int(np.isfinite(masked).sum()))
        ts, tr = top_n(masked[None, :], m) if m else (np.zeros((1, 0), np.float32),
                                                      np.zeros((1, 0), np.int64))
        tops.append((ts[0], tr[0] + shard.base))
        mine = rows[i][(rows[i] >= shard.base) & (rows[i] < shard.base + n_local)]
        held.append((mine, sc[mine - shard.base]))
    top_rows = np.unique(np.concatenate([r for _, r in tops])) if tops else np.zeros(0, np.int64)
    return {"top": tops, "held": held,
            "ids": dict(zip(top_rows.tolist(), shard.ids_of(top_rows), strict=True))}


# ---------------------------------------------------------------------- ingress side
def index_field_types(root: Path, manifest: dict[str, Any]) -> dict[str, list[str]]:
    """Field -> its types across the snapshot's segments, as
    :meth:`serving._metadata.IndexMetadata.field_types`, from the metadata files'
    schemas alone (the shards read and verify the columns themselves)."""
    import pyarrow as pa

    from indexing._metadata import METADATA_FILE, METADATA_VERSION
    from mvr.format import SEGMENTS_DIR

    out: dict[str, list[str]] = {}
    for seg in manifest["segments"]:
        rel = f"{SEGMENTS_DIR}/{seg['name']}/{METADATA_FILE}"
        if rel not in manifest["files"]:
            continue
        try:
            with pa.OSFile(str(root / rel), "rb") as source:
                schema = pa.ipc.open_file(source).schema
        except (pa.ArrowInvalid, OSError) as e:
            raise CorruptIndexError(f"{root / rel}: expected an Arrow IPC file, got {e}") from e
        raw = (schema.metadata or {}).get(b"mvr_metadata")
        info = json.loads(raw) if raw else None
        if not info or info.get("version") != METADATA_VERSION:
            raise CorruptIndexError(f"{root / rel}: expected mvr metadata version "
                                    f"{METADATA_VERSION}, got {None if not info else info.get('version')!r}")
        for name, kind in info["types"].items():
            if kind not in out.setdefault(name, []):
                out[name].append(kind)
    return dict(sorted(out.items()))


def _parse(ss: Any, filter: Any) -> Any:
    """The filter tree, checked against the index's fields as the single process checks it."""
    from serving._filters import _check

    if filter is None:
        return None
    tree = parse_filter(filter)
    known = getattr(ss, "_field_types", None)
    if known is None:
        known = ss._field_types = index_field_types(ss.path, ss.manifest)
    _check(tree, known, "filter")
    return tree


def search_filtered(ss: Any, queries: Any, *, k: int, candidates: int | None, rerank: bool,
                    rerank_candidates: int | None, filter: Any, hybrid: Any,
                    partial_results: bool) -> Any:
    """:meth:`serving._sharded.ShardedSearcher.search` with a filter and/or hybrid fusion
    (see the module): the answer of :func:`serving._filtered_search.search_filtered`."""
    check_k(k, "k")
    n, _ = ss._depths(k, candidates, None)  # the default N within the token budget
    timings: dict[str, float] = {}
    t = time.perf_counter()
    config = None if hybrid is None or hybrid is False else parse_hybrid(hybrid)
    texts = _texts(queries) if config is not None else None
    tree = _parse(ss, filter)
    missing: set[int] = set()
    everyone = list(range(len(ss.shards)))
    if tree is None:
        n_allowed = ss.num_documents
    else:
        got = ss._fan("count", [(tree,)] * len(everyone), everyone, partial_results, missing)
        n_allowed = sum(got.values())
    t = tick(timings, "filter", t)
    q = ss._queries(queries)
    tick(timings, "encode", t)
    if config is None:
        hits = _dense(ss, q, k, n, rerank_candidates, rerank, tree, n_allowed, partial_results,
                      missing, timings)
    else:
        assert texts is not None
        hits = _hybrid(ss, q, texts, k, n, rerank_candidates, rerank, tree, n_allowed, config,
                       partial_results, missing, timings)
    return ss._results(hits, timings, missing)


def _path(ss: Any, n_allowed: int, k: int, n: int, rerank: bool,
          rerank_candidates: int | None) -> tuple[str, int]:
    """:func:`serving._filtered_search.filtered_path` from the manifest's config."""
    _, n2 = ss._depths(k, n, rerank_candidates)
    if not ss._has_cids:
        n2 = n
    if rerank and n_allowed <= SELECTIVE_FACTOR * min(n, n2):
        return "exact", n2
    if rerank and ss._has_cids and n_allowed <= SELECTIVE_FACTOR * n:
        return "allowed_candidates", n2
    return "first_stage", n2


def _dense(ss: Any, q: MultiVectors, k: int, n: int, rerank_candidates: int | None,
           rerank: bool, tree: Any, n_allowed: int, partial: bool, missing: set[int],
           timings: dict[str, float]) -> Any:
    """The late-interaction top ``k`` among the allowed rows (the path the single process
    takes for ``n_allowed`` of them)."""
    from serving._sharded import _Hits

    if n_allowed == 0:
        return _Hits(ids=[[] for _ in range(len(q))],
                     scores=[np.zeros(0, np.float32) for _ in range(len(q))],
                     rows=np.zeros((len(q), 0), np.int64))
    path, n2 = _path(ss, n_allowed, k, n, rerank, rerank_candidates)
    if path == "first_stage":
        return ss._dense(q, k, n, n2, rerank, tree, partial, missing, timings)
    t = time.perf_counter()
    everyone = [i for i in range(len(ss.shards)) if i not in missing]
    if path == "exact" or n2 >= n_allowed:  # every allowed row scored exactly
        got = ss._fan("exact_all", [(q, tree, k)] * len(everyone), everyone, partial, missing)
        names = {r: d for ans in got.values() for r, d in ans["ids"].items()}
        s, r = _merge([(a["scores"], a["rows"]) for _, a in sorted(got.items())], k, len(q))
        tick(timings, "rerank", t)
        return _Hits.of(s, r, names)
    got = ss._fan("approx_all", [(q, tree, n2)] * len(everyone), everyone, partial, missing)
    _, rows = _merge([(a["scores"], a["rows"]) for _, a in sorted(got.items())], n2, len(q))
    t = tick(timings, "approx", t)
    hits = ss._exact(q, rows, k, partial, missing)
    tick(timings, "rerank", t)
    return hits


def _merge(parts: list[tuple[np.ndarray, np.ndarray]], n: int, n_q: int
           ) -> tuple[np.ndarray, np.ndarray]:
    if not parts:
        return np.zeros((n_q, 0), np.float32), np.zeros((n_q, 0), np.int64)
    return merge_top_n(parts, n)


def _hybrid(ss: Any, q: MultiVectors, texts: list[str], k: int, n: int,
            rerank_candidates: int | None, rerank: bool, tree: Any, n_allowed: int,
            config: HybridConfig, partial: bool, missing: set[int],
            timings: dict[str, float]) -> Any:
    """:func:`serving._filtered_search.hybrid_search` over the shards."""
    from serving._sharded import _Hits

    depth = max(config.depth, k)
    dense = _dense(ss, q, depth, max(n, depth), rerank_candidates, rerank, tree, n_allowed,
                   partial, missing, timings)
    t = time.perf_counter()
    everyone = [i for i in range(len(ss.shards)) if i not in missing]
    got = ss._fan("bm25", [(texts, tree, depth, dense.rows)] * len(everyone), everyone,
                  partial, missing)
    names = {r: d for ans in got.values() for r, d in ans["ids"].items()}
    for i, row in enumerate(dense.rows):
        names.update(zip(row[row >= 0].tolist(), dense.ids[i], strict=True))
    cands = [_candidates(i, dense, got, depth, config) for i in range(len(q))]
    t = tick(timings, "bm25", t)
    if config.rescore and rerank:
        _rescore_late(ss, q, cands, partial, missing, names)
        t = tick(timings, "rescore", t)
    gone = _rows_of_shards(ss, missing)
    ids, scores = [], []
    for rows, late, b in cands:
        keep = ~np.isin(rows, gone)  # partial: rows whose shard did not answer every step
        top_rows, fused = fuse(rows[keep], late[keep], b[keep], config, k)
        ids.append([names[r] for r in top_rows.tolist()])
        scores.append(fused.astype(np.float32))
    tick(timings, "fusion", t)
    return _Hits(ids=ids, scores=scores, rows=np.zeros((len(q), 0), np.int64))


def _candidates(i: int, dense: Any, got: dict[int, Any], depth: int,
                config: HybridConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Query ``i``'s fusion candidates: rows (sorted), MaxSim and BM25 scores (nan = not
    in that list), exactly as the single process builds them."""
    d_rows = dense.rows[i][dense.rows[i] >= 0]
    d_scores = np.asarray(dense.scores[i])
    if got:
        t_scores = np.concatenate([a["top"][i][0] for _, a in sorted(got.items())])
        t_rows = np.concatenate([a["top"][i][1] for _, a in sorted(got.items())])
        order = np.lexsort((t_rows, -t_scores))[:depth]  # the global top: score, lower row
        t_scores, t_rows = t_scores[order], t_rows[order]
    else:
        t_scores, t_rows = np.zeros(0, np.float32), np.zeros(0, np.int64)
    rows = np.unique(np.concatenate([d_rows, t_rows]))
    late = np.full(len(rows), np.nan)
    late[np.searchsorted(rows, d_rows)] = d_scores
    bm = np.full(len(rows), np.nan)
    bm[np.searchsorted(rows, t_rows)] = t_scores
    if config.rescore:
        for _, a in sorted(got.items()):
            h_rows, h_scores = a["held"][i]
            bm[np.searchsorted(rows, h_rows)] = h_scores
        known = ~np.isnan(bm)
        bm = np.where(known & (bm > 0), bm, 0.0)
    return rows, late, bm


def _rescore_late(ss: Any, q: MultiVectors, cands: list[Any], partial: bool,
                  missing: set[int], names: dict[int, str]) -> None:
    """Exact MaxSim of the candidates that only BM25 found (fills their nan entries)."""
    need = [np.flatnonzero(np.isnan(late)) for _, late, _ in cands]
    width = max((len(x) for x in need), default=0)
    if width == 0:
        return
    rows = np.full((len(cands), width), -1, dtype=np.int64)
    for i, idx in enumerate(need):
        rows[i, : len(idx)] = cands[i][0][idx]
    scores, got_names = ss._exact_scores(q, rows, partial, missing)
    names.update(got_names)
    for i, idx in enumerate(need):
        cands[i][1][idx] = scores[i, : len(idx)]


def _rows_of_shards(ss: Any, shards: set[int]) -> np.ndarray:
    """Every global row of the given shards (partial answers leave them out)."""
    if not shards:
        return np.zeros(0, np.int64)
    docs = [int(s["documents"]) for s in ss.manifest["segments"]]
    bounds = np.concatenate([ss._bases, [sum(docs)]])
    return np.concatenate([np.arange(bounds[i], bounds[i + 1]) for i in sorted(shards)])
