"""Candidates from token-level inverted lists, scored as WARP does (XTR/WARP's token
retrieval), for :meth:`serving.Searcher.search`.

Every document token sits in the inverted list of its centroid (its id in ``cids``)
with a 4-bit product-quantised code of its residual. For each query token, the
``nprobe`` most similar centroids' lists are scanned by faiss's IVF-PQ fast-scan
(SIMD lookups: ``q . c + q . r`` per token) and the best ``kprime`` tokens come back.
A document then scores, per query token, its best returned token's score, or the
query token's last (``kprime``-th) returned score when none of its tokens came back
(WARP's missing-similarity estimate), summed over the query tokens. The ``n`` best
documents are candidates for the approximate MaxSim over the 8-bit codes and the
exact re-rank.

No format change: the 4-bit codes are derived at open from the index's 8-bit
approximate codes (format 3, ``acodes.bin``). Each sub-quantizer's 256 centroids are
clustered, weighted by how many tokens use them, into 16 (faiss k-means); a token's
4-bit code is the cluster of its 8-bit centroid. On PyPI 701,912 (7.3M tokens) this
takes 32 B per token of RAM (234 MB) plus 8 B of id (the token's row), and ~2 s at open.
"""

from __future__ import annotations

import threading
from typing import Any

import numba
import numpy as np

from mvr.errors import DimensionMismatchError

__all__ = ["TokenCandidates", "aggregate_token_lists", "code_counts", "derive_codebook", "merge_token_lists",
           "pack_codes"]


@numba.njit(nogil=True, cache=True)
def _code_counts(acodes):  # pragma: no cover - numba
    n, m_count = acodes.shape
    counts = np.zeros((m_count, 256), np.int64)
    for t in range(n):
        for m in range(m_count):
            counts[m, acodes[t, m]] += 1
    return counts


def code_counts(acodes: np.ndarray) -> np.ndarray:
    """How many tokens use each 8-bit code of each sub-quantizer: shape (M, 256)."""
    return _code_counts(np.ascontiguousarray(acodes))


def derive_codebook(centroids8: np.ndarray, counts: np.ndarray | None = None, seed: int = 0
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Per sub-quantizer, 16 centroids clustering its 256 (weighted by ``counts``, if
    given: e.g. :func:`code_counts`), and the map of every 8-bit code to its 4-bit code.

    Shapes: ``centroids8`` (M, 256, dsub) float32, ``counts`` (M, 256); returns
    centroids (M, 16, dsub) float32 and ``code_map`` (M, 256) uint8.
    """
    import faiss

    m_count, k, dsub = centroids8.shape
    if counts is None:
        counts = np.ones((m_count, 256), np.int64)
    if k != 256 or counts.shape != (m_count, 256):
        raise DimensionMismatchError(
            f"8-bit codebook {centroids8.shape} and counts {counts.shape}: expected (M, 256, dsub) "
            "and (M, 256)"
        )
    cents = np.zeros((m_count, 16, dsub), np.float32)
    code_map = np.zeros((m_count, 256), np.uint8)
    for m in range(m_count):
        x = np.ascontiguousarray(centroids8[m], dtype=np.float32)
        w = counts[m].astype(np.float32) + np.float32(1e-3)  # unused codes still placed
        km = faiss.Kmeans(dsub, 16, niter=25, seed=seed + m, min_points_per_centroid=1,
                          max_points_per_centroid=1 << 20)
        km.train(x, weights=w)
        cents[m] = km.centroids
        _, a = km.index.search(x, 1)
        code_map[m] = a[:, 0].astype(np.uint8)
    return cents, code_map


@numba.njit(nogil=True, cache=True)
def _pack(acodes, code_map, out):  # pragma: no cover - numba
    n, m_count = acodes.shape
    for t in range(n):
        for j in range(m_count // 2):
            lo = code_map[2 * j, acodes[t, 2 * j]]
            hi = code_map[2 * j + 1, acodes[t, 2 * j + 1]]
            out[t, j] = lo | (hi << 4)


@numba.njit(nogil=True, cache=True)
def _pack_by_list(acodes, code_map, cids, bounds, tok_starts, codes, ids):  # pragma: no cover
    # one pass in token order: token t's packed code goes to its list's next slot, with
    # its row as the id (what a search needs of a token)
    pos = bounds[:-1].copy()
    m_count = acodes.shape[1]
    for r in range(tok_starts.shape[0] - 1):
        for t in range(tok_starts[r], tok_starts[r + 1]):
            c = np.int64(cids[t])
            p = pos[c]
            pos[c] += 1
            ids[p] = r
            for j in range(m_count // 2):
                lo = code_map[2 * j, acodes[t, 2 * j]]
                hi = code_map[2 * j + 1, acodes[t, 2 * j + 1]]
                codes[p, j] = lo | (hi << 4)


def pack_codes(acodes: np.ndarray, code_map: np.ndarray) -> np.ndarray:
    """4-bit codes of every token (shape (n, M/2) uint8, faiss's PQ bit order: code
    ``m`` in the low nibble of byte ``m/2`` for even ``m``) from its 8-bit codes
    (shape (n, M)) through ``code_map`` (shape (M, 256))."""
    if acodes.ndim != 2 or acodes.shape[1] % 2 or code_map.shape != (acodes.shape[1], 256):
        raise DimensionMismatchError(
            f"approximate codes {acodes.shape} and map {code_map.shape}: expected (n, M) with M "
            "even and (M, 256)"
        )
    out = np.empty((acodes.shape[0], acodes.shape[1] // 2), np.uint8)
    _pack(np.ascontiguousarray(acodes), np.ascontiguousarray(code_map), out)
    return out


@numba.njit(nogil=True, cache=True)
def _aggregate(dist, rows, floors, allowed, acc, seen, touched):  # pragma: no cover
    # per query token a (entries by descending score): each row's best entry above the
    # floor adds its excess over it
    nt = 0
    for a in range(dist.shape[0]):
        floor = floors[a]
        mark = a + 1
        for j in range(dist.shape[1]):
            r = rows[a, j]
            if r < 0 or not dist[a, j] > floor:
                continue
            if seen[r] == mark:  # an earlier (better) entry of this query token
                continue
            if allowed.shape[0] > 0 and not allowed[r]:
                continue
            if seen[r] == 0:
                touched[nt] = r
                nt += 1
            seen[r] = mark
            acc[r] += dist[a, j] - floor
    return nt


def merge_token_lists(
    parts: list[tuple[np.ndarray, np.ndarray]], kprime: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per query token, the entries of every part (shards: each its own top ``kprime``
    tokens, as (scores, global rows), shapes (tokens, w_i), -1 rows pad) by descending
    score, and the floor: the ``kprime``-th best score of them all (the last when fewer
    came back); a row of -2 is an entry that counts for the floor but is no candidate
    (a row the part may not return). Only entries strictly above the floor count, and those are the same
    set however the tokens are split into parts: a token scoring above the global
    ``kprime``-th score is in its part's top ``kprime`` whatever the ties. Returns
    (scores, rows, floors), shapes (tokens, sum w_i), (tokens, sum w_i), (tokens,)."""
    dist = np.concatenate([p[0] for p in parts], axis=1).astype(np.float32, copy=False)
    rows = np.concatenate([p[1] for p in parts], axis=1).astype(np.int64, copy=False)
    dist = np.where(rows != -1, dist, -np.inf).astype(np.float32)
    if len(parts) > 1:
        order = np.argsort(-dist, axis=1, kind="stable")
        dist = np.take_along_axis(dist, order, axis=1)
        rows = np.take_along_axis(rows, order, axis=1)
    valid = (rows != -1).sum(axis=1)
    floors = np.full(dist.shape[0], -np.inf, np.float32)
    for a in range(dist.shape[0]):
        if valid[a]:
            floors[a] = dist[a, min(int(kprime), int(valid[a])) - 1]
    return np.ascontiguousarray(dist), np.ascontiguousarray(rows), floors


class TokenCandidates:
    """The token-level lists of an index with approximate codes (see the module
    docstring). Build with :meth:`from_codes`; :meth:`search` is thread-safe."""

    def __init__(self, index: Any, quantizer: Any, n_rows: int) -> None:
        self.index = index  # faiss.IndexIVFPQFastScan, each token's id its row
        self._quantizer = quantizer  # referenced, not owned, by the index
        self.n_rows = int(n_rows)
        self._scratch = threading.local()

    @classmethod
    def from_codes(cls, centroids: np.ndarray, approx_centroids: np.ndarray,
                   cids: np.ndarray, acodes: np.ndarray, tok_starts: np.ndarray,
                   seed: int = 0) -> TokenCandidates:
        """From the codec's centroids (K, dim) and 8-bit sub-quantizer centroids
        (M, 256, dsub), every token's centroid id (n,) and 8-bit codes (n, M), and the
        rows' token offsets (n_rows + 1,)."""
        import faiss

        k, dim = centroids.shape
        m_count = acodes.shape[1]
        n = acodes.shape[0]
        if cids.shape[0] != n or int(tok_starts[-1]) != n or m_count % 2:
            raise DimensionMismatchError(
                f"token lists: expected {n} centroid ids and token offsets ending at {n} with an "
                f"even number of sub-quantizers, got {cids.shape[0]}, {int(tok_starts[-1])}, {m_count}"
            )
        # unweighted: the codebook is the codec's alone, the same in every shard (weighting
        # by use cut the squared error on PyPI by 1%: 0.1414 vs 0.1432)
        cents4, code_map = derive_codebook(approx_centroids, None, seed)
        quantizer = faiss.IndexFlatL2(dim)
        quantizer.add(np.ascontiguousarray(centroids, dtype=np.float32))
        ivf = faiss.IndexIVFPQ(quantizer, dim, k, m_count, 4, faiss.METRIC_INNER_PRODUCT)
        faiss.copy_array_to_vector(cents4.reshape(-1), ivf.pq.centroids)
        ivf.is_trained = True
        bounds = np.zeros(k + 1, np.int64)
        np.cumsum(np.bincount(cids.astype(np.int64), minlength=k), out=bounds[1:])
        codes = np.empty((n, m_count // 2), np.uint8)  # in list order (a counting sort)
        ids = np.empty(n, np.int64)
        _pack_by_list(np.ascontiguousarray(acodes), code_map, np.ascontiguousarray(cids), bounds,
                      np.ascontiguousarray(tok_starts, dtype=np.int64), codes, ids)
        invlists = ivf.invlists
        for c in range(k):
            lo, hi = int(bounds[c]), int(bounds[c + 1])
            if hi > lo:  # named slices: swig_ptr keeps no reference
                ids_c, codes_c = ids[lo:hi], codes[lo:hi]
                invlists.add_entries(c, hi - lo, faiss.swig_ptr(ids_c), faiss.swig_ptr(codes_c))
        ivf.ntotal = n
        del codes, ids
        index = faiss.IndexIVFPQFastScan(ivf)
        del ivf
        return cls(index, quantizer, len(tok_starts) - 1)

    @property
    def nbytes(self) -> int:
        """RAM of the lists: 4-bit codes and 8-byte ids (the tokens' rows)."""
        return int(self.index.ntotal) * (int(self.index.code_size) + 8)

    def token_lists(
        self, queries: np.ndarray, st: np.ndarray, nprobe: int, kprime: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each query token's best ``kprime`` tokens in its ``nprobe`` most similar
        centroids' lists: (scores, rows), shapes (tokens, kprime), by descending score,
        rows -1 past the end. ``queries`` (tokens, dim), ``st`` (K, tokens)."""
        import faiss

        k = st.shape[0]
        nprobe = max(1, min(int(nprobe), k))
        kprime = max(1, int(kprime))
        x = np.ascontiguousarray(queries, dtype=np.float32)
        nt = x.shape[0]
        sim = np.ascontiguousarray(np.asarray(st, dtype=np.float32).T)  # (tokens, K)
        if nprobe < k:
            probe = np.argpartition(-sim, nprobe - 1, axis=1)[:, :nprobe]
        else:
            probe = np.broadcast_to(np.arange(k), sim.shape)
        probe = np.ascontiguousarray(probe, dtype=np.int64)
        pdis = np.ascontiguousarray(np.take_along_axis(sim, probe, axis=1), dtype=np.float32)
        dist = np.empty((nt, kprime), np.float32)
        labels = np.empty((nt, kprime), np.int64)
        params = faiss.SearchParametersIVF()
        params.nprobe = nprobe
        self.index.search_preassigned_c(  # named arrays: swig_ptr keeps no reference
            nt, faiss.swig_ptr(x), kprime, faiss.swig_ptr(probe), faiss.swig_ptr(pdis),
            faiss.swig_ptr(dist), faiss.swig_ptr(labels), False, params,
        )
        return dist, labels

    def _buffers(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = self._scratch
        if getattr(s, "n", -1) != self.n_rows:
            s.acc = np.zeros(self.n_rows, np.float32)
            s.seen = np.zeros(self.n_rows, np.int32)
            s.touched = np.empty(self.n_rows, np.int32)
            s.n = self.n_rows
        return s.acc, s.seen, s.touched

    def search(
        self, queries: np.ndarray, st: np.ndarray, query_offsets: np.ndarray, n: int,
        nprobe: int, kprime: int, allowed: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` best rows per query by the WARP estimate, best first, ties by the
        lower row: (rows, scores), shapes (n_queries, n), ``-1`` / ``-inf`` pads.

        ``queries`` (total query tokens, dim), ``st`` (K, total query tokens): the
        query tokens' similarities to the centroids; ``allowed`` (n_rows,) bool.
        """
        nq = len(query_offsets) - 1
        out = np.full((nq, n), -1, np.int64)
        out_s = np.full((nq, n), -np.inf, np.float32)
        for i in range(nq):
            lo, hi = int(query_offsets[i]), int(query_offsets[i + 1])
            part = self.token_lists(queries[lo:hi], st[:, lo:hi], nprobe, kprime)
            r, sc = aggregate_token_lists([part], kprime, n, self.n_rows, allowed,
                                          self._buffers())
            out[i, : len(r)] = r
            out_s[i, : len(r)] = sc
        return out, out_s


def aggregate_token_lists(
    parts: list[tuple[np.ndarray, np.ndarray]], kprime: int, n: int, n_rows: int,
    allowed: np.ndarray | None = None, buffers: tuple[np.ndarray, ...] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One query's best ``n`` rows (and scores) from its query tokens' lists in
    ``parts`` (:meth:`TokenCandidates.token_lists` of each shard, in global rows; see
    :func:`merge_token_lists`): per query token, a row's best entry above the floor
    adds its excess over the floor; the score is that sum plus the floors' (a row with
    no entry for a query token is estimated at its floor). Best first, ties by the
    lower row. ``buffers``: zeroed scratch (acc, seen, touched) of ``n_rows``, left
    zeroed."""
    dist, rows, floors = merge_token_lists(parts, kprime)
    if buffers is None:
        buffers = (np.zeros(n_rows, np.float32), np.zeros(n_rows, np.int32),
                   np.empty(n_rows, np.int32))
    acc, seen, touched = buffers
    mask = np.zeros(0, np.bool_) if allowed is None else np.ascontiguousarray(allowed, np.bool_)
    nt = _aggregate(dist, rows, floors, mask, acc, seen, touched)
    hit = touched[:nt].copy()
    base = np.float32(floors[np.isfinite(floors)].sum())
    sc = acc[hit] + base
    acc[hit] = 0.0
    seen[hit] = 0
    from mvr._approx import best_rows

    return best_rows(hit, sc, n)


def open_extra_candidates(
    config: Any, codec: Any, cids: np.ndarray, acodes: np.ndarray | None, tok_starts: np.ndarray,
) -> tuple[TokenCandidates | None, tuple[np.ndarray, np.ndarray] | None]:
    """What :meth:`serving.Searcher.open` builds to add candidates to the first stage's:
    (token lists, None) where the index has approximate codes (an even number of bytes)
    and ``config.token_candidates`` > 0; else (None, centroid inverted lists) where
    ``config.centroid_candidates`` > 0 (format 2, or codes switched off); else neither."""
    if (config.token_candidates > 0 and acodes is not None and acodes.shape[1] % 2 == 0
            and getattr(codec, "approx_bytes", 0)):
        return TokenCandidates.from_codes(codec.centroids, codec.approx_centroids, cids, acodes,
                                          tok_starts), None
    if config.centroid_candidates > 0:
        from mvr._approx import centroid_lists

        return None, centroid_lists(cids, tok_starts, codec.num_centroids)
    return None, None
