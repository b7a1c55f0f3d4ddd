"""Approximate MaxSim from centroid ids (PLAID's centroid interaction).

Every document token is replaced by its nearest k-means centroid (its id, held in
RAM: 2 bytes per token); the query's similarity to every centroid is one small GEMM,
``S = Q C^T`` of shape (query tokens, K). A candidate's approximate score is then
``sum_i max_j S[i, cid_j]`` over its tokens ``j``: lookups, no token vectors read.
It ranks candidates well enough to cut the first stage's thousands to the hundred
that are scored exactly from the re-ranking table.

With approximate codes (:meth:`mvr._codec.TokenCodec.encode_approx`, ``approx_pq``
bytes per token, also in RAM) a token's similarity is refined by its residual's
product-quantised inner product: ``S[i, cid_j] + sum_m L[m, code_jm, i]``
(:func:`pq_scores`), a sum of table lookups.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from mvr._maxsim import _prefetch
from mvr._pq_tiles import LANES, SHORT_LANES, pq_token, pq_token_short
from mvr.errors import DimensionMismatchError

__all__ = [
    "best_rows", "centroid_candidates", "centroid_lists", "centroid_scores", "query_centroid_similarities",
    "scored_centroid_candidates", "union_rows",
]


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


_PREFETCH_AHEAD = 4  # candidates (a microbenchmark under load: 3,000 PyPI candidates 11.6-16.6 ms, 23-26 without)


@numba.njit(nogil=True, cache=True)
def _pq_scores(st, lut8, bias, scale, nq, rows, tok_starts, cids, acodes, out, addr):  # pragma: no cover
    # st: (K, P) float32 and lut8: (M, 256, P) uint8 of one query, P >= nq padded to a
    # multiple of LANES (or SHORT_LANES alone); a token's refined similarity to query
    # token a is st[c, a] + bias[a] + scale[a] * sum_m lut8[m, code_m, a], LANES query
    # tokens per step (mvr._pq_tiles.pq_token). The codes of the candidate _PREFETCH_AHEAD places
    # on are prefetched (``addr``: the address of acodes): candidates are random rows,
    # so each one's codes are a cache miss the hardware prefetcher cannot foresee
    p = st.shape[1]
    m_count = acodes.shape[1]
    acc = np.empty(p, dtype=np.float32)
    lut_a, st_a, bias_a, scale_a, acc_a = (lut8.ctypes.data, st.ctypes.data, bias.ctypes.data,
                                           scale.ctypes.data, acc.ctypes.data)
    n_rows = rows.shape[0]
    for j in range(n_rows):
        if j + _PREFETCH_AHEAD < n_rows:
            ahead = rows[j + _PREFETCH_AHEAD]
            if ahead >= 0:
                a0 = addr + tok_starts[ahead] * m_count
                a1 = addr + tok_starts[ahead + 1] * m_count
                while a0 < a1:
                    _prefetch(a0)
                    a0 += 64
        r = rows[j]
        if r < 0:
            out[j] = -np.inf
            continue
        for a in range(p):
            acc[a] = -np.inf
        for t in range(tok_starts[r], tok_starts[r + 1]):
            st_row = st_a + np.int64(cids[t]) * p * 4
            if p == SHORT_LANES:
                pq_token_short(lut_a, addr + t * m_count, m_count, p, st_row, bias_a, scale_a,
                               acc_a)
                continue
            for lo in range(0, p, LANES):
                pq_token(lut_a + lo, addr + t * m_count, m_count, p, st_row + lo * 4,
                         bias_a + lo * 4, scale_a + lo * 4, acc_a + lo * 4)
        s = np.float32(0.0)
        for a in range(nq):
            s += acc[a]
        out[j] = s


@numba.njit(nogil=True, cache=True)
def _quantize(lut, p, q, bias, scale):  # pragma: no cover - numba
    m_count, k, n = lut.shape
    for a in range(n):
        span = np.float32(0.0)
        b = np.float32(0.0)
        for m in range(m_count):
            lo = lut[m, 0, a]
            hi = lo
            for c in range(1, k):
                v = lut[m, c, a]
                lo = min(lo, v)
                hi = max(hi, v)
            span = max(span, hi - lo)
            b += lo
        sc = span / np.float32(255.0) if span > 0 else np.float32(1.0)
        bias[a] = b
        scale[a] = sc
        for m in range(m_count):
            lo = lut[m, 0, a]
            for c in range(1, k):
                lo = min(lo, lut[m, c, a])
            for c in range(k):
                v = np.rint((lut[m, c, a] - lo) / sc)
                q[m, c, a] = np.uint8(min(max(v, np.float32(0.0)), np.float32(255.0)))


def quantize_tables(lut: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tables of one query (shape (M, 256, n)) as uint8 (shape (M, 256, p), zero-padded
    past ``n``), with per query token ``bias`` and ``scale`` (shapes (p,)) such that
    ``sum_m lut[m, code_m, a] ~= bias[a] + scale[a] * sum_m lut8[m, code_m, a]``: faiss
    fast-scan's trick, which keeps the tables in L2 cache (a float32 table of M = 64 is
    1.5 MB at 24 query tokens). Each entry is off by at most ``scale / 2``."""
    m, k, n = lut.shape
    q = np.zeros((m, k, p), np.uint8)
    bias = np.zeros(p, np.float32)
    scale = np.zeros(p, np.float32)
    _quantize(np.ascontiguousarray(lut, dtype=np.float32), p, q, bias, scale)
    return q, bias, scale


def prepare_pq(st: np.ndarray, lut: Any, query_offsets: np.ndarray) -> list[tuple]:
    """Per query, the padded similarities and 8-bit tables :func:`pq_scores` scores with
    (computed once when one query's candidates are scored in several calls). ``lut``:
    the tables of all query tokens, or a function of (lo, hi) giving those of query
    tokens lo..hi (a batch's float32 tables at once were 33 MB at 32 x 16 tokens)."""
    out = []
    for i in range(len(query_offsets) - 1):
        lo, hi = int(query_offsets[i]), int(query_offsets[i + 1])
        p = SHORT_LANES if hi - lo <= SHORT_LANES else -(-(hi - lo) // LANES) * LANES
        st_q = np.zeros((st.shape[0], p), np.float32)
        st_q[:, : hi - lo] = st[:, lo:hi]
        tables = lut(lo, hi) if callable(lut) else lut[:, :, lo:hi]
        out.append((st_q, *quantize_tables(tables, p), hi - lo))
    return out


def pq_scores(
    st: np.ndarray, lut: np.ndarray, query_offsets: np.ndarray, rows: np.ndarray,
    tok_starts: np.ndarray, cids: np.ndarray, acodes: np.ndarray,
    prepared: list[tuple] | None = None,
) -> np.ndarray:
    """Approximate MaxSim refined by approximate codes: per token, its centroid's
    similarity plus the product-quantised residual's (see the module docstring), the
    residual's tables quantised to 8 bits (:func:`quantize_tables`).

    Parameters
    ----------
    st : np.ndarray
        Shape: (K, total_query_tokens): :func:`query_centroid_similarities`.
    lut : np.ndarray
        Shape: (M, 256, total_query_tokens): :meth:`mvr._codec.TokenCodec.approx_tables`.
    query_offsets, rows, tok_starts, cids : np.ndarray
        As for :func:`centroid_scores`.
    acodes : np.ndarray
        Shape: (total_tokens, M) uint8: every document token's approximate code (M <= 256).
    prepared : list, optional
        :func:`prepare_pq` of ``st`` and ``lut`` (else computed here).

    Returns
    -------
    np.ndarray
        Shape: (n_queries, n) float32.
    """
    shape = prepared[0][1].shape if prepared else (None if lut is None else lut.shape)
    if (shape is None or len(shape) != 3 or acodes.ndim != 2 or shape[0] != acodes.shape[1]
            or shape[1] != 256 or acodes.shape[1] > 256):
        raise DimensionMismatchError(
            f"approximate codes {acodes.shape} and tables {shape}: expected (tokens, M) "
            "and (M, 256, query tokens), M <= 256"
        )
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    acodes = np.ascontiguousarray(acodes)
    out = np.empty(rows.shape, dtype=np.float32)
    if prepared is None:
        prepared = prepare_pq(st, lut, query_offsets)
    for i in range(rows.shape[0]):
        st_q, lut8, bias, scale, nq = prepared[i]
        width = st_q.shape[1]
        if ((width % LANES and width != SHORT_LANES) or lut8.shape[2] != width
                or len(bias) != width):
            raise DimensionMismatchError(
                f"query {i}: prepared tables of {lut8.shape[2]} lanes and similarities of "
                f"{st_q.shape[1]}: expected equal multiples of {LANES}, or {SHORT_LANES} (prepare_pq)"
            )
        _pq_scores(st_q, lut8, bias, scale, nq, rows[i], tok_starts, cids, acodes, out[i],
                   acodes.ctypes.data)
    return out


# ---------------------------------------------------------------------------- candidates
@numba.njit(nogil=True, cache=True)
def _build_lists(cids, tok_starts, k):  # pragma: no cover - numba
    n_rows = tok_starts.shape[0] - 1
    counts = np.zeros(k + 1, np.int64)
    for r in range(n_rows):
        for t in range(tok_starts[r], tok_starts[r + 1]):
            counts[np.int64(cids[t]) + 1] += 1
    off = np.cumsum(counts)
    rows = np.empty(off[-1], np.int32)
    pos = off[:-1].copy()
    for r in range(n_rows):  # rows ascending within each list: a repeat is the last entry
        for t in range(tok_starts[r], tok_starts[r + 1]):
            c = np.int64(cids[t])
            if pos[c] > off[c] and rows[pos[c] - 1] == r:
                continue
            rows[pos[c]] = r
            pos[c] += 1
    offsets = np.zeros(k + 1, np.int64)
    for c in range(k):
        offsets[c + 1] = offsets[c] + (pos[c] - off[c])
    out = np.empty(offsets[-1], np.int32)
    for c in range(k):
        out[offsets[c] : offsets[c + 1]] = rows[off[c] : pos[c]]
    return offsets, out


def centroid_lists(
    cids: np.ndarray, tok_starts: np.ndarray, num_centroids: int
) -> tuple[np.ndarray, np.ndarray]:
    """Inverted lists from centroid ids: the rows having a token assigned to centroid
    ``c`` are ``rows[offsets[c]:offsets[c + 1]]`` (ascending, each row once).

    Shapes: ``cids`` (total_tokens,), ``tok_starts`` (n_rows + 1,) int64; returns
    ``offsets`` (num_centroids + 1,) int64 and ``rows`` (n_postings,) int32. One pass
    over the ids (a counting sort), so it is built at open in O(tokens).
    """
    if tok_starts.shape[0] - 1 >= 1 << 31:
        raise DimensionMismatchError(f"centroid lists: at most 2**31 - 1 rows, got {tok_starts.shape[0] - 1}")
    return _build_lists(np.ascontiguousarray(cids), np.ascontiguousarray(tok_starts, np.int64),
                        int(num_centroids))


@numba.njit(nogil=True, cache=True)
def _probe(st, q_lo, q_hi, nprobe, offsets, rows, allowed, acc, seen, touched):  # pragma: no cover
    nt = 0
    k = st.shape[0]
    keep = min(nprobe + 1, k)
    best = np.empty(keep, np.float32)  # the keep best similarities, descending
    order = np.empty(keep, np.int64)
    for a in range(q_lo, q_hi):
        # the nprobe + 1 most similar centroids, by insertion into a sorted buffer (one
        # pass over the K similarities; a full argsort per query token cost more than
        # the probing at K = 4096); ties keep the lower centroid id first
        filled = 0
        for c in range(k):
            v = st[c, a]
            if filled == keep and v <= best[keep - 1]:
                continue
            pos = filled if filled < keep else keep - 1
            while pos > 0 and best[pos - 1] < v:
                if pos < keep:
                    best[pos] = best[pos - 1]
                    order[pos] = order[pos - 1]
                pos -= 1
            best[pos] = v
            order[pos] = c
            if filled < keep:
                filled += 1
        # a row none of whose tokens is in the probed lists gets the (nprobe+1)-th
        # similarity for this query token (WARP's missing-similarity estimate): only
        # the excess over it is accumulated
        floor = best[nprobe] if nprobe < k else np.float32(-1.0)
        mark = a + 1
        for p in range(min(nprobe, k)):
            c = order[p]
            gain = best[p] - floor
            for j in range(offsets[c], offsets[c + 1]):
                r = rows[j]
                if seen[r] == mark:  # a better centroid of this query token already hit it
                    continue
                if allowed.shape[0] > 0 and not allowed[r]:
                    continue
                if seen[r] == 0:
                    touched[nt] = r
                    nt += 1
                seen[r] = mark
                acc[r] += gain
    return nt


def centroid_candidates(
    st: np.ndarray, query_offsets: np.ndarray, offsets: np.ndarray, rows: np.ndarray,
    n_rows: int, n: int, nprobe: int, allowed: np.ndarray | None = None,
) -> np.ndarray:
    """Candidates from the centroid inverted lists (PLAID/WARP-style generation).

    For every query token, the ``nprobe`` centroids most similar to it are probed; a
    row scores, per query token, the similarity of the best probed centroid among its
    tokens' centroids, or the (``nprobe`` + 1)-th similarity when none of its tokens
    is in a probed list. The ``n`` best rows per query are returned, best first, ties
    by the lower row (so a shard holding a run of the rows cuts its own lists the same
    way: the global top ``n`` is the merge of the shards' top ``n``).

    Parameters
    ----------
    st : np.ndarray
        Shape: (K, total_query_tokens): :func:`query_centroid_similarities`.
    query_offsets : np.ndarray
        Shape: (n_queries + 1,).
    offsets, rows : np.ndarray
        :func:`centroid_lists`.
    n_rows : int
        Rows in the index.
    n : int
        Candidates per query.
    nprobe : int
        Centroids probed per query token.
    allowed : np.ndarray, optional
        Shape: (n_rows,) bool: rows that may be returned (tombstones, filters).

    Returns
    -------
    np.ndarray
        Shape: (n_queries, n) int64, ``-1`` pads when fewer rows were reached.
    """
    return scored_centroid_candidates(st, query_offsets, offsets, rows, n_rows, n, nprobe,
                                      allowed)[0]


def scored_centroid_candidates(
    st: np.ndarray, query_offsets: np.ndarray, offsets: np.ndarray, rows: np.ndarray,
    n_rows: int, n: int, nprobe: int, allowed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`centroid_candidates` (same arguments) with the rows' scores: (rows, scores),
    shapes (n_queries, n), int64 with ``-1`` pads and float32 with ``-inf`` pads."""
    nq = len(query_offsets) - 1
    out = np.full((nq, n), -1, dtype=np.int64)
    out_s = np.full((nq, n), -np.inf, dtype=np.float32)
    mask = np.zeros(0, np.bool_) if allowed is None else np.ascontiguousarray(allowed, np.bool_)
    acc = np.zeros(n_rows, np.float32)
    seen = np.zeros(n_rows, np.int32)
    touched = np.empty(n_rows, np.int32)
    for i in range(nq):
        nt = _probe(st, int(query_offsets[i]), int(query_offsets[i + 1]), int(nprobe), offsets,
                    rows, mask, acc, seen, touched)
        hit, sc = best_rows(touched[:nt], acc[touched[:nt]], n)
        out[i, : len(hit)] = hit
        out_s[i, : len(hit)] = sc
        acc[touched[:nt]] = 0.0
        seen[touched[:nt]] = 0
    return out, out_s


def best_rows(rows: np.ndarray, scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` best of ``rows`` by ``scores`` (shapes (m,)), best first, ties by the
    lower row: every row tied with the n-th is kept before the sort, so the tie-break is
    exact. Returns (rows int64, scores float32), shapes (<= n,)."""
    if rows.shape[0] > n:
        keep = np.flatnonzero(scores >= -np.partition(-scores, n - 1)[n - 1])
        rows, scores = rows[keep], scores[keep]
    order = np.lexsort((rows, -scores))[:n]
    return rows[order].astype(np.int64), scores[order].astype(np.float32)


def union_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per query, the rows of ``a`` followed by those of ``b`` not already in ``a``
    (shapes (n_q, n_a), (n_q, n_b), ``-1`` pads); shape (n_q, <= n_a + n_b), -1 pads."""
    parts = []
    for i in range(a.shape[0]):
        x = a[i][a[i] >= 0]
        y = b[i][b[i] >= 0]
        parts.append(np.concatenate([x, y[~np.isin(y, x)]]))
    width = max((len(p) for p in parts), default=0)
    out = np.full((a.shape[0], width), -1, dtype=np.int64)
    for i, p in enumerate(parts):
        out[i, : len(p)] = p
    return out
