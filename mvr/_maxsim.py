"""Exact late-interaction (MaxSim) scores over ragged batches.

``score(q, d) = sum_i max_j <q_i, d_j>`` for the token vectors ``q_i`` of a query
and ``d_j`` of a document.

How it is computed: no padding at all. Blocks of document tokens (converted to
float32 in a reused buffer by a numba kernel when stored as float16) are
multiplied by blocks of query tokens in one BLAS GEMM (numpy), giving a
``(doc_tokens, query_tokens)`` similarity block; a numba kernel (``nogil``) then
takes, per document, the element-wise max over its own rows (padding never
exists, so it can never win a max) and sums the maxima of each query's tokens.
Accumulation is float32 throughout.

Why these choices (measured on this 2-core AMD machine while writing the module):
numpy's OpenBLAS GEMM beat torch's MKL GEMM by up to 2x, and converting
float16 with torch between OpenBLAS calls makes the two thread pools fight for
the cores; numpy's own float16 cast is ~10x slower than the numba kernel here.
Few, large GEMMs are used (blocks of ~8 MiB of document tokens) because every
BLAS call synchronises its threads, which is costly on a loaded machine.

Threads: the GEMMs use numpy's OpenBLAS thread pool (all cores by default). When
the cores are shared (concurrent queries, other processes), one BLAS thread per
call is much faster: start the process with ``OPENBLAS_NUM_THREADS=1`` (measured in
BENCHMARKS.md: re-ranking p50 29 ms vs 255 ms with 2 threads at load average ~13).
The heavy parts (GEMM, numba kernels) release the GIL, so callers can score queries
in parallel threads.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from mvr._multivectors import MultiVectors, as_multivectors, check_offsets
from mvr.errors import DimensionMismatchError, InvalidVectorsError

__all__ = ["maxsim", "maxsim_candidates"]

# Block sizes: ~8 MiB of float32 document tokens per GEMM, and at most ~16 MiB
# of float32 similarities per (document block, query block).
_DOC_BLOCK_BYTES = 8 << 20
_SIMS_BLOCK_BYTES = 16 << 20


def maxsim(queries: Any, documents: Any) -> np.ndarray:
    """Exact MaxSim of every query against every document.

    Parameters
    ----------
    queries : MultiVectors or sequence of np.ndarray
        Query token vectors, item ``i`` of shape (t_i, dim); float16 or float32.
        Every query needs at least one token.
    documents : MultiVectors or sequence of np.ndarray
        Document token vectors, item ``j`` of shape (t_j, dim); float16 or float32.
        Every document needs at least one token; the batch itself may be empty.

    Returns
    -------
    np.ndarray
        Shape: (n_queries, n_documents), float32.
        ``out[i, j] = sum over tokens u of query i of max over tokens v of document j
        of <u, v>``, accumulated in float32.

    Raises
    ------
    DimensionMismatchError
        Queries and documents have different dims.
    EmptyInputError
        No queries, or a query or document with zero tokens (its index is named).

    Examples
    --------
    >>> q = [np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)]
    >>> d = [np.array([[2.0, 0.0]], np.float32), np.array([[-1.0, -1.0]], np.float32)]
    >>> maxsim(q, d).tolist()
    [[2.0, -2.0]]
    """
    q, d = _coerce(queries, documents)
    out = np.empty((len(q), len(d)), dtype=np.float32)
    if len(d) == 0:
        return out
    qv = _as_f32(q.vectors)
    doc_tokens = _doc_block_tokens(d.dim)
    d_blocks = _split_by_tokens(d.offsets, doc_tokens)
    q_blocks = _split_by_tokens(q.offsets, max(1, _SIMS_BLOCK_BYTES // (4 * doc_tokens)))
    work = _Workspace(d.dim)
    for j0, j1 in d_blocks:
        dv = work.doc_block(d.vectors, int(d.offsets[j0]), int(d.offsets[j1]))
        d_off = d.offsets[j0 : j1 + 1] - d.offsets[j0]
        for i0, i1 in q_blocks:
            t0, t1 = int(q.offsets[i0]), int(q.offsets[i1])
            sims = work.similarities(dv, qv[t0:t1])
            _segment_max_sum(sims, d_off, q.offsets[i0 : i1 + 1] - t0, out[i0:i1, j0:j1])
    return out


def maxsim_candidates(queries: Any, documents: Any, candidate_offsets: Any) -> np.ndarray:
    """Exact MaxSim of each query against its own candidate documents (re-ranking).

    Parameters
    ----------
    queries : MultiVectors or sequence of np.ndarray
        ``n_queries`` items, item ``q`` of shape (t_q, dim); float16 or float32.
    documents : MultiVectors or sequence of np.ndarray
        The candidates of all queries, concatenated: query ``q`` is scored against
        ``documents[candidate_offsets[q]:candidate_offsets[q + 1]]``.
    candidate_offsets : array-like of int
        Shape: (n_queries + 1,). ``0``, non-decreasing, ending at ``len(documents)``.
        A query may have zero candidates.

    Returns
    -------
    np.ndarray
        Shape: (len(documents),), float32. Entry ``k`` is the MaxSim of document
        ``k`` with the query whose candidate range holds ``k``.

    Raises
    ------
    DimensionMismatchError, EmptyInputError
        As for :func:`maxsim`.
    InvalidVectorsError
        ``candidate_offsets`` has the wrong shape, does not start at 0, decreases,
        or does not end at ``len(documents)``.
    """
    q, d = _coerce(queries, documents)
    cand = _check_candidate_offsets(candidate_offsets, len(q), len(d))
    out = np.empty(len(d), dtype=np.float32)
    qv = _as_f32(q.vectors)
    doc_tokens = _doc_block_tokens(d.dim)
    work = _Workspace(d.dim)
    for i in range(len(q)):
        c0, c1 = int(cand[i]), int(cand[i + 1])
        if c0 == c1:
            continue
        t0, t1 = int(q.offsets[i]), int(q.offsets[i + 1])
        q_off = np.array([0, t1 - t0], dtype=np.int64)
        for j0, j1 in _split_by_tokens(d.offsets[c0 : c1 + 1], doc_tokens):
            j0, j1 = j0 + c0, j1 + c0
            dv = work.doc_block(d.vectors, int(d.offsets[j0]), int(d.offsets[j1]))
            sims = work.similarities(dv, qv[t0:t1])
            d_off = d.offsets[j0 : j1 + 1] - d.offsets[j0]
            _segment_max_sum(sims, d_off, q_off, out[None, j0:j1])
    return out


# ---------------------------------------------------------------------- validation


def _coerce(queries: Any, documents: Any) -> tuple[MultiVectors, MultiVectors]:
    q = as_multivectors(queries, name="queries")
    q.require_nonempty("query")
    if not isinstance(documents, MultiVectors) and _is_empty_sequence(documents):
        d = MultiVectors.empty(q.dim)
    else:
        d = as_multivectors(documents, name="documents")
    if d.dim != q.dim:
        raise DimensionMismatchError(
            f"documents have dim {d.dim} but queries have dim {q.dim}; expected equal dims"
        )
    if len(d):
        d.require_nonempty("document")
    return q, d


def _is_empty_sequence(obj: Any) -> bool:
    return isinstance(obj, (list, tuple)) and len(obj) == 0


def _check_candidate_offsets(candidate_offsets: Any, n_queries: int, n_docs: int) -> np.ndarray:
    cand = np.asarray(candidate_offsets)
    if cand.ndim != 1 or cand.shape[0] != n_queries + 1:
        raise InvalidVectorsError(
            f"candidate_offsets: expected shape ({n_queries + 1},) for {n_queries} queries, "
            f"got {cand.shape}"
        )
    check_offsets(cand, n_docs, name="candidate_offsets", total_name="len(documents)")
    cand = cand.astype(np.int64)
    return cand


# ---------------------------------------------------------------------- blocks


def _split_by_tokens(offsets: np.ndarray, max_tokens: int) -> list[tuple[int, int]]:
    """Consecutive item ranges ``[i0, i1)`` of about ``max_tokens`` tokens each.

    Parameters
    ----------
    offsets : np.ndarray
        Shape: (n + 1,). Item offsets (need not start at 0).

    An item longer than ``max_tokens`` gets a range of its own.
    """
    n = offsets.shape[0] - 1
    rel = offsets - offsets[0]
    blocks: list[tuple[int, int]] = []
    start = 0
    while start < n:
        limit = rel[start] + max_tokens
        stop = int(np.searchsorted(rel, limit, side="right")) - 1
        stop = min(max(stop, start + 1), n)
        blocks.append((start, stop))
        start = stop
    return blocks


def _doc_block_tokens(dim: int) -> int:
    return max(256, _DOC_BLOCK_BYTES // (4 * dim))


def _as_f32(vectors: np.ndarray) -> np.ndarray:
    """Shape: (t, dim) -> C-contiguous float32 (t, dim); float16 converted by numba."""
    if vectors.dtype == np.float32:
        return np.ascontiguousarray(vectors)
    out = np.empty(vectors.shape, dtype=np.float32)
    _f16_to_f32(np.ascontiguousarray(vectors).reshape(-1).view(np.uint16), out.reshape(-1))
    return out


class _Workspace:
    """Reusable float32 buffers for one scoring call (no per-block allocation)."""

    def __init__(self, dim: int) -> None:
        self._dim = dim
        self._doc = np.empty(0, dtype=np.float32)
        self._sims = np.empty(0, dtype=np.float32)

    def doc_block(self, vectors: np.ndarray, lo: int, hi: int) -> np.ndarray:
        """Rows ``lo:hi`` of ``vectors`` as a C-contiguous float32 array, shape (hi - lo, dim)."""
        block = vectors[lo:hi]
        if block.dtype == np.float32:
            return np.ascontiguousarray(block)
        size = (hi - lo) * self._dim
        if self._doc.shape[0] < size:
            self._doc = np.empty(size, dtype=np.float32)
        buf = self._doc[:size]
        _f16_to_f32(np.ascontiguousarray(block).reshape(-1).view(np.uint16), buf)
        return buf.reshape(hi - lo, self._dim)

    def similarities(self, doc_block: np.ndarray, query_block: np.ndarray) -> np.ndarray:
        """``doc_block @ query_block.T`` into a reused buffer, shape (t_docs, t_queries)."""
        size = doc_block.shape[0] * query_block.shape[0]
        if self._sims.shape[0] < size:
            self._sims = np.empty(size, dtype=np.float32)
        sims = self._sims[:size].reshape(doc_block.shape[0], query_block.shape[0])
        np.matmul(doc_block, query_block.T, out=sims)
        return sims


@numba.njit(nogil=True, cache=True, fastmath=True)
def _segment_max_sum(
    sims: np.ndarray, d_off: np.ndarray, q_off: np.ndarray, out: np.ndarray
) -> None:  # pragma: no cover - compiled
    """Reduce a similarity block to MaxSim scores.

    Parameters
    ----------
    sims : np.ndarray
        Shape: (doc_tokens, query_tokens). Row ``r`` holds one document token's dot
        products with every query token of the block.
    d_off : np.ndarray
        Shape: (n_docs + 1,). Document rows, starting at 0.
    q_off : np.ndarray
        Shape: (n_queries + 1,). Query columns, starting at 0.
    out : np.ndarray
        Shape: (n_queries, n_docs). Written: ``out[i, j]``.
    """
    n_tok = sims.shape[1]
    best = np.empty(n_tok, dtype=np.float32)
    for j in range(d_off.shape[0] - 1):
        lo, hi = d_off[j], d_off[j + 1]
        for c in range(n_tok):
            best[c] = sims[lo, c]
        for r in range(lo + 1, hi):
            for c in range(n_tok):
                v = sims[r, c]
                if v > best[c]:
                    best[c] = v
        for i in range(q_off.shape[0] - 1):
            s = np.float32(0.0)
            for c in range(q_off[i], q_off[i + 1]):
                s += best[c]
            out[i, j] = s


@numba.njit(nogil=True, cache=True)
def _f16_to_f32(src: np.ndarray, dst: np.ndarray) -> None:  # pragma: no cover - compiled
    """Exact IEEE half -> single conversion of finite values (numpy's cast is ~10x slower).

    Parameters
    ----------
    src : np.ndarray
        Shape: (n,), uint16: the bits of float16 values (finite: validated upstream).
    dst : np.ndarray
        Shape: (n,), float32. Written.
    """
    bits = dst.view(np.uint32)
    n_subnormal = np.int64(0)
    for i in range(src.shape[0]):  # vectorised: integer ops only
        h = np.uint32(src[i])
        mag = h & np.uint32(0x7FFF)
        sign = (h & np.uint32(0x8000)) << np.uint32(16)
        n_subnormal += np.int64((mag - np.uint32(1)) < np.uint32(0x3FF))
        normal = np.uint32(0xFFFFFFFF) * np.uint32(mag >= np.uint32(0x0400))
        bits[i] = sign | (((mag << np.uint32(13)) + np.uint32(0x38000000)) & normal)
    if n_subnormal:
        for i in range(src.shape[0]):
            h = np.uint32(src[i])
            mag = h & np.uint32(0x7FFF)
            if mag != 0 and mag < np.uint32(0x0400):
                v = np.float32(mag) * np.float32(2.0**-24)
                dst[i] = -v if h & np.uint32(0x8000) else v
