"""Approximate MaxSim from centroid ids (PLAID's centroid interaction).

Every document token is replaced by its nearest k-means centroid (its id, held in
RAM: 2 bytes per token); the query's similarity to every centroid is one small GEMM,
``S = Q C^T`` of shape (query tokens, K). A candidate's approximate score is then
``sum_i max_j S[i, cid_j]`` over its tokens ``j``: lookups, no token vectors read.
It ranks candidates well enough to cut the first stage's thousands to the hundred
that are scored exactly from the re-ranking table.
"""

from __future__ import annotations

import numba
import numpy as np

from mvr.errors import DimensionMismatchError

__all__ = ["centroid_scores", "query_centroid_similarities"]


def query_centroid_similarities(queries: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """``centroids @ queries.T``: shape (K, total query tokens), float32, C-contiguous
    (a token's lookups for all query tokens are one contiguous row).

    Shapes: ``queries`` (total_query_tokens, dim), ``centroids`` (K, dim).
    """
    q = np.ascontiguousarray(queries, dtype=np.float32)
    c = np.ascontiguousarray(centroids, dtype=np.float32)
    if q.ndim != 2 or c.ndim != 2 or q.shape[1] != c.shape[1]:
        raise DimensionMismatchError(
            f"query tokens {q.shape} and centroids {c.shape}: expected the same dim"
        )
    return np.ascontiguousarray(c @ q.T)


@numba.njit(nogil=True, cache=True)
def _scores(st, q_lo, q_hi, rows, tok_starts, cids, out):  # pragma: no cover - numba
    nq = q_hi - q_lo
    acc = np.empty(nq, dtype=np.float32)
    for j in range(rows.shape[0]):
        r = rows[j]
        if r < 0:
            out[j] = -np.inf
            continue
        for a in range(nq):
            acc[a] = -np.inf
        for t in range(tok_starts[r], tok_starts[r + 1]):
            row = st[cids[t]]
            for a in range(nq):
                v = row[q_lo + a]
                if v > acc[a]:
                    acc[a] = v
        s = np.float32(0.0)
        for a in range(nq):
            s += acc[a]
        out[j] = s


def centroid_scores(
    st: np.ndarray, query_offsets: np.ndarray, rows: np.ndarray, tok_starts: np.ndarray,
    cids: np.ndarray,
) -> np.ndarray:
    """Approximate MaxSim of each query against its candidate rows.

    Parameters
    ----------
    st : np.ndarray
        Shape: (K, total_query_tokens): :func:`query_centroid_similarities`.
    query_offsets : np.ndarray
        Shape: (n_queries + 1,): query ``i``'s tokens are columns ``[o[i], o[i+1])``.
    rows : np.ndarray
        Shape: (n_queries, n): candidate rows per query, ``-1`` pads (scored ``-inf``).
    tok_starts : np.ndarray
        Shape: (n_rows + 1,) int64: row ``r``'s tokens are ``cids[tok_starts[r]:tok_starts[r+1]]``.
    cids : np.ndarray
        Shape: (total_tokens,): centroid id of every document token.

    Returns
    -------
    np.ndarray
        Shape: (n_queries, n) float32.
    """
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    out = np.empty(rows.shape, dtype=np.float32)
    for i in range(rows.shape[0]):
        _scores(st, int(query_offsets[i]), int(query_offsets[i + 1]), rows[i], tok_starts,
                cids, out[i])
    return out
