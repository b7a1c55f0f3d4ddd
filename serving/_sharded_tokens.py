"""The token lists' candidates (:mod:`serving._token_candidates`) in sharded search.

Each shard returns, per query, its query tokens' best ``token_kprime`` tokens in the
probed lists (scores and global rows; the probes depend on the query and the shared
codec alone), unmasked so that every shard's entries count for the floor: an entry of
a row the shard may not return (a tombstone, a filter) has row -2. The ingress merges
them (:func:`serving._token_candidates.aggregate_token_lists`): the same floors, the
same estimates and the same cut as the single process's, since only entries above the
global ``kprime``-th score count and each of those is in its shard's top ``kprime``.
The approximate MaxSim of the merged candidates is a second fan-out
(:meth:`serving._sharded.ShardSearcher.approx_rows`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mvr._multivectors import MultiVectors

__all__ = ["merge_shard_token_lists", "shard_approx_rows", "shard_token_lists"]


def shard_token_lists(searcher: Any, q: MultiVectors, st: np.ndarray, mask: np.ndarray | None,
                      base: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per query, this shard's (scores, global rows) of its query tokens' lists (shapes
    (tokens, kprime)): -1 pads, -2 an entry whose row ``mask`` excludes."""
    cfg = searcher.config
    out = []
    for i in range(len(q)):
        lo, hi = int(q.offsets[i]), int(q.offsets[i + 1])
        dist, rows = searcher._tokens.token_lists(q.vectors[lo:hi], st[:, lo:hi],
                                                  cfg.token_nprobe, cfg.token_kprime)
        glob = np.where(rows >= 0, rows + base, -1)
        if mask is not None:
            glob = np.where((rows >= 0) & ~mask[np.maximum(rows, 0)], -2, glob)
        out.append((dist, glob.astype(np.int64)))
    return out


def merge_shard_token_lists(ingress: Any, per_shard: list[list[tuple[np.ndarray, np.ndarray]]],
                            n: int) -> np.ndarray:
    """The global top ``n`` rows per query (shape (n_q, n), -1 pads) from every shard's
    :func:`shard_token_lists`."""
    from serving._token_candidates import aggregate_token_lists

    nq = len(per_shard[0])
    out = np.full((nq, n), -1, np.int64)
    buffers = (np.zeros(ingress._n_rows, np.float32), np.zeros(ingress._n_rows, np.int32),
               np.empty(ingress._n_rows, np.int32))
    for i in range(nq):
        rows, _ = aggregate_token_lists([shard[i] for shard in per_shard],
                                        ingress.config.token_kprime, n, ingress._n_rows,
                                        buffers=buffers)
        out[i, : len(rows)] = rows
    return out


def shard_approx_rows(shard: Any, q: MultiVectors, rows: np.ndarray) -> dict[str, Any]:
    """:meth:`serving._sharded.ShardSearcher.approx_rows`."""
    from mvr._approx import query_centroid_similarities

    s = shard.searcher
    n_local = len(s.ids)
    local = np.where((rows >= shard.base) & (rows < shard.base + n_local), rows - shard.base, -1)
    st = query_centroid_similarities(q.vectors, s.codec.centroids)
    a = np.asarray(s._approx_scores(q, st, local, s._prepare_pq(q, st)), dtype=np.float32)
    return {"rows": np.where(local >= 0, rows, -1),
            "approx": np.where(local >= 0, a, -np.inf).astype(np.float32)}
