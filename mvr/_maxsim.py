"""Exact late-interaction (MaxSim) scores over ragged batches.

``score(q, d) = sum_i max_j <q_i, d_j>`` for the token vectors ``q_i`` of a query
and ``d_j`` of a document.

How it is computed: one fused numba kernel (``nogil``), no BLAS call, no padding of
documents and no similarity matrix in memory. Each document's token rows are taken
in chunks of at most ``_CHUNK_BYTES`` of float32; float16 rows are converted (the
CPU's own half -> single instruction) into a reused per-thread float32 buffer that
stays in L2, float32 rows are read in place (each row is read once per block of
query rows), and the next chunk's rows are prefetched while the tiles run. The query rows of a task are
transposed once into blocks of ``LANES`` rows; a register tile
(:mod:`mvr._maxsim_tiles`) then multiplies ``ROWS`` chunk rows by one block, one
vector FMA per chunk row and coordinate, and folds the dot products into a running
max per query row (starting at -inf) with elementwise vector maxima: no horizontal
sums. The maxima of each query's rows are summed per document. Accumulation is
float32 throughout, in coordinate order. Lanes past a task's last query row are zero
and their maxima are never summed; document rows are never padded, so padding can
never win a max.

Why (measured on the 2-core AMD EPYC, Zen 3, under load; BENCHMARKS.md, "Re-rank
kernel"): a re-rank multiplies a (23, 384) query by ~10^5 document rows, a GEMM
with one small side. OpenBLAS packs both operands per call and reached 10-20
GFLOP/s on 8 MiB document blocks against ~70 GFLOP/s on a large square GEMM, plus
separate passes for the max and for the float16 conversion. The tile loop alone,
on rows in L2, runs at the square GEMM's rate; what remains is the pass that
brings rows from memory. (That tile was 4 query rows x 3 document rows vectorised
over the dimension; on an AVX-512 Xeon it reached 42% of the square GEMM's 192
GFLOP/s, its 12 horizontal sums per tile and LLVM's 256-bit preference the limits,
and the transposed tiles replaced it: BENCHMARKS.md, "Re-rank kernel"; they read
each float32 row once per 32 query rows, so the copy into the L2 buffer that the 4 x 3
tiles needed went, and the prefetch moved into the tiles' FMA loop.) For the 4 x 3
tiles, copying float32 rows into the L2 buffer first beat reading them in place (~39
vs ~31 GFLOP/s); prefetching the next chunk a slice
after every tile of the current one (so the memory loads overlap the FMAs) added
10-20% (f32 45 vs 37, f16 52 vs 48 GFLOP/s); prefetching during the first query
pass only, and a double-buffered fill spread over the tiles, did not. The instruction set is the host's, picked at run time: numba compiles for
the CPU it runs on (AVX2 + FMA + F16C here, AVX-512 where present) and keys its
cache by that CPU.

Threads: one call runs on the calling thread only (no BLAS pool, so concurrent
queries do not fight over the cores); the kernel releases the GIL, so callers
score queries in parallel threads.
"""

from __future__ import annotations

import threading
from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from mvr._maxsim_tiles import LANES, ROWS, tile_main, tile_mid, tile_one
from mvr._multivectors import MultiVectors, as_multivectors, check_offsets
from mvr.errors import DimensionMismatchError, InvalidVectorsError

__all__ = ["maxsim", "maxsim_candidates"]

# Document rows scored per chunk, as float32 bytes: 96 rows at 384-d (144 KiB) stay
# in a 512 KiB L2 while every query tile passes over them (48 to 256 rows measured
# within noise of each other under load; the smaller end was ahead).
_CHUNK_BYTES = 144 << 10
# Query rows per block of `maxsim` (all pairs): ~192 KiB of float32 at 384-d, so
# that a block of queries and a chunk of document rows share L2.
_QUERY_BLOCK_BYTES = 192 << 10
# Zero rows after the queries (a block holds at least this many rows).
_TILE_Q = 4


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
    rows = max(_TILE_Q, _QUERY_BLOCK_BYTES // (4 * q.dim))
    bounds = _query_blocks(q.offsets, rows)
    plan = np.empty((len(bounds) - 1, 4), dtype=np.int64)
    plan[:, 0], plan[:, 1] = bounds[:-1], bounds[1:]
    plan[:, 2], plan[:, 3] = 0, len(d)
    _run(q, d, plan, np.arange(len(q), dtype=np.int64), out)
    return out


def maxsim_candidates(queries: Any, documents: Any, candidate_offsets: Any) -> np.ndarray:
    """Exact MaxSim of each query against its own candidate documents (re-ranking).

    Parameters
    ----------
    queries : MultiVectors or sequence of np.ndarray
        ``n_queries`` items, item ``q`` of shape (t_q, dim); float16 or float32.
    documents : MultiVectors or sequence of np.ndarray
        The candidates of all queries, concatenated: query ``q`` is scored against
        ``documents[candidate_offsets[q]:candidate_offsets[q + 1]]``; float16 or
        float32 (for example decoded from compressed codes).
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
    out = np.empty((1, len(d)), dtype=np.float32)
    if len(d) == 0:
        return out[0]
    n = len(q)
    plan = np.empty((n, 4), dtype=np.int64)
    plan[:, 0], plan[:, 1] = np.arange(n), np.arange(1, n + 1)
    plan[:, 2], plan[:, 3] = cand[:-1], cand[1:]
    # every query writes row 0 of `out`, at its candidates' columns
    _run(q, d, plan, np.zeros(n, np.int64), out)
    return out[0]


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


# ---------------------------------------------------------------------- driver


def _query_blocks(offsets: np.ndarray, max_rows: int) -> np.ndarray:
    """Boundaries (query indices) of consecutive blocks of about ``max_rows`` rows.

    Parameters
    ----------
    offsets : np.ndarray
        Shape: (n + 1,). Query row offsets, starting at 0.

    Returns
    -------
    np.ndarray
        Shape: (n_blocks + 1,), int64, from 0 to n. A query longer than
        ``max_rows`` gets a block of its own.
    """
    n = offsets.shape[0] - 1
    bounds = [0]
    while bounds[-1] < n:
        start = bounds[-1]
        stop = int(np.searchsorted(offsets, offsets[start] + max_rows, side="right")) - 1
        bounds.append(min(max(stop, start + 1), n))
    return np.asarray(bounds, dtype=np.int64)


class _Workspace(threading.local):
    """Per-thread float32 chunk buffer (reused across calls)."""

    def __init__(self) -> None:
        self.chunk = np.empty((0, 0), dtype=np.float32)

    def chunk_buffer(self, rows: int, dim: int) -> np.ndarray:
        """Shape: (rows, dim), float32, C-contiguous; contents undefined."""
        if self.chunk.shape != (rows, dim):
            self.chunk = np.empty((rows, dim), dtype=np.float32)
        return self.chunk


_WORKSPACE = _Workspace()


def _chunk_rows(dim: int) -> int:
    """Rows per chunk: ``_CHUNK_BYTES`` of float32, a multiple of the tile's ``ROWS``."""
    return max(ROWS, _CHUNK_BYTES // (4 * dim) // ROWS * ROWS)


def _padded_queries(q: MultiVectors) -> np.ndarray:
    """Query rows as float32, plus ``_TILE_Q - 1`` zero rows so a tile never overruns.

    Shape: (total_query_tokens + _TILE_Q - 1, dim), C-contiguous.
    """
    n, dim = q.vectors.shape
    out = np.zeros((n + _TILE_Q - 1, dim), dtype=np.float32)
    if q.vectors.dtype == np.float16:
        _f16_to_f32(
            np.ascontiguousarray(q.vectors).reshape(-1).view(np.uint16), out[:n].reshape(-1)
        )
    else:
        out[:n] = q.vectors
    return out


def _run(
    q: MultiVectors,
    d: MultiVectors,
    plan: np.ndarray,
    out_row: np.ndarray,
    out: np.ndarray,
) -> None:
    """Score each planned (query range, document range) pair into ``out``; see ``_score_plan``."""
    qx = _padded_queries(q)
    dim = d.dim
    if d.vectors.dtype == np.float16:
        half = np.ascontiguousarray(d.vectors).view(np.uint16)
        full = np.empty((0, dim), dtype=np.float32)
    else:
        full = np.ascontiguousarray(d.vectors, dtype=np.float32)
        half = np.empty((0, dim), dtype=np.uint16)
    chunk = _WORKSPACE.chunk_buffer(_chunk_rows(dim), dim)
    rows = q.offsets[plan[:, 1]] - q.offsets[plan[:, 0]]
    passes = int(-(-int(rows.max()) // LANES)) if len(rows) else 1
    qt = np.empty((max(passes, 1), dim, LANES), dtype=np.float32)
    best = np.empty(qt.shape[0] * LANES, dtype=np.float32)
    _score_plan(
        qx, q.offsets, full, half, d.offsets, plan, out_row, out, best, chunk, chunk.shape[0], qt
    )


# ---------------------------------------------------------------------- kernels


@numba.njit(nogil=True, cache=True)
def _score_plan(
    qx: np.ndarray,
    q_off: np.ndarray,
    full: np.ndarray,
    half: np.ndarray,
    d_off: np.ndarray,
    plan: np.ndarray,
    out_row: np.ndarray,
    out: np.ndarray,
    best: np.ndarray,
    chunk: np.ndarray,
    chunk_rows: int,
    qt: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """MaxSim of planned query ranges against document ranges.

    Parameters
    ----------
    qx : np.ndarray
        Shape: (total_query_tokens + 3, dim), float32. Query rows, then zero rows.
    q_off : np.ndarray
        Shape: (n_queries + 1,). Query row offsets.
    full : np.ndarray
        Shape: (total_doc_tokens, dim), float32 document rows; (0, dim) when ``half``
        holds them.
    half : np.ndarray
        Shape: (total_doc_tokens, dim), uint16: float16 document rows (their bits);
        (0, dim) when ``full`` holds them.
    d_off : np.ndarray
        Shape: (n_docs + 1,). Document row offsets.
    plan : np.ndarray
        Shape: (n_tasks, 4): queries ``plan[t, 0]:plan[t, 1]`` against documents
        ``plan[t, 2]:plan[t, 3]``.
    out_row : np.ndarray
        Shape: (n_queries,). Query ``i`` and document ``j`` write ``out[out_row[i], j]``.
    out : np.ndarray
        Shape: (n_rows, n_cols), float32. Written.
    best : np.ndarray
        Shape: (passes * LANES,), float32. Scratch: running max per query row of a task.
    chunk : np.ndarray
        Shape: (chunk_rows, dim), float32. Scratch: the document rows being scored.
    chunk_rows : int
        Document rows scored at a time (a document longer than this is split; its
        running max carries over).
    qt : np.ndarray
        Shape: (passes, dim, LANES), float32. Scratch: a task's query rows, transposed
        in blocks of ``LANES`` (zero past its last row), ``passes`` enough for the
        longest task.
    """
    is_half = half.shape[0] > 0
    if is_half:
        base, row_bytes, n_src = half.ctypes.data, half.shape[1] * 2, half.shape[0]
    else:
        base, row_bytes, n_src = full.ctypes.data, full.shape[1] * 4, full.shape[0]
    dim = qx.shape[1]
    for t in range(plan.shape[0]):
        i0, i1 = plan[t, 0], plan[t, 1]
        r0, r1 = q_off[i0], q_off[i1]
        n_pass = (r1 - r0 + LANES - 1) // LANES
        for p in range(n_pass):  # the task's rows, transposed: lane l = row r0 + p*LANES + l
            for k in range(dim):
                for lane in range(LANES):
                    r = r0 + p * LANES + lane
                    qt[p, k, lane] = qx[r, k] if r < r1 else np.float32(0.0)
        for j in range(plan[t, 2], plan[t, 3]):
            for r in range(n_pass * LANES):
                best[r] = -np.inf
            lo, hi = d_off[j], d_off[j + 1]
            for c0 in range(lo, hi, chunk_rows):
                c1 = min(c0 + chunk_rows, hi)
                # while the tiles run, the rows that follow in memory (the next chunk)
                # are prefetched, so that the next pass finds them in cache
                pf_addr = base + c1 * row_bytes
                pf_bytes = (min(c1 + chunk_rows, n_src) - c1) * row_bytes
                if is_half:  # converted into the L2-resident buffer, tiled from there
                    _half_rows_to_f32(half, c0, c1, chunk)
                    _max_rows(qt, n_pass, chunk, c1 - c0, best, pf_addr, pf_bytes)
                else:  # each row is read once per block of LANES query rows: in place
                    _max_rows(qt, n_pass, full[c0:c1], c1 - c0, best, pf_addr, pf_bytes)
            for i in range(i0, i1):
                s = np.float32(0.0)
                for r in range(q_off[i] - r0, q_off[i + 1] - r0):
                    s += best[r]
                out[out_row[i], j] = s


@numba.njit(nogil=True, cache=True)
def _max_rows(
    qt: np.ndarray,
    n_pass: int,
    x: np.ndarray,
    m: int,
    best: np.ndarray,
    pf_addr: int,
    pf_bytes: int,
) -> None:  # pragma: no cover - compiled
    """``best[l] = max(best[l], max_j <query row l, x[j]>)`` for the lanes of ``n_pass``
    blocks and j in [0, m), by the register tiles of :mod:`mvr._maxsim_tiles`.

    Parameters
    ----------
    qt : np.ndarray
        Shape: (>= n_pass, dim, LANES), float32, C-contiguous: query rows transposed.
    x : np.ndarray
        Shape: (>= m, dim), float32, C-contiguous. Document rows.
    best : np.ndarray
        Shape: (>= n_pass * LANES,), float32. Updated.
    pf_addr, pf_bytes : int
        A memory range prefetched (into L2) by the full tiles, a share each spread over
        their FMAs, so that its loads overlap them instead of following them.
    """
    dim = x.shape[1]
    n_tiles = max(1, n_pass * ((m + ROWS - 1) // ROWS))
    lines = (pf_bytes + 63) // 64
    per_tile = min((lines + n_tiles - 1) // n_tiles, dim // 2)  # a tile prefetches <= dim/2
    x_addr, row_bytes = x.ctypes.data, dim * 4
    for p in range(n_pass):
        q_addr = qt.ctypes.data + p * dim * LANES * 4
        b_addr = best.ctypes.data + p * LANES * 4
        j = 0
        while j + ROWS <= m:
            n_pf = max(0, min(per_tile, lines))
            tile_main(q_addr, x_addr + j * row_bytes, dim, b_addr, pf_addr, n_pf)  # type: ignore[call-arg]
            pf_addr += n_pf * 64
            lines -= n_pf
            j += ROWS
        while ROWS > 4 and j + 4 <= m:
            tile_mid(q_addr, x_addr + j * row_bytes, dim, b_addr, 0, 0)  # type: ignore[call-arg]
            j += 4
        while j < m:
            tile_one(q_addr, x_addr + j * row_bytes, dim, b_addr, 0, 0)  # type: ignore[call-arg]
            j += 1
    while lines > 0:  # what the tiles did not take (a chunk with few full tiles)
        _prefetch(pf_addr)  # type: ignore[call-arg]
        pf_addr += 64
        lines -= 1


@intrinsic
def _prefetch(typingctx, addr):  # type: ignore[no-untyped-def]  # pragma: no cover
    """``llvm.prefetch`` for reading, into L2 (``prefetcht1`` on x86) of the cache line
    holding the byte at ``addr``; never faults, whatever the address."""
    if addr not in types.integer_domain:
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        ptr = builder.inttoptr(args[0], i8p)
        # rw = 0 (read), locality = 2, cache type = 1 (data)
        builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, 2), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.void(addr), codegen


@intrinsic
def _half_bits_to_f32(typingctx, bits):  # type: ignore[no-untyped-def]  # pragma: no cover
    """float32 value of the IEEE half whose bits are ``bits`` (uint16): an LLVM
    ``fpext half -> float``, which vectorises to the CPU's conversion instruction
    (``vcvtph2ps`` with F16C / AVX-512) and is exact for every half."""
    if bits != types.uint16:
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())

    return types.float32(types.uint16), codegen


@numba.njit(nogil=True, cache=True)
def _half_rows_to_f32(
    half: np.ndarray, lo: int, hi: int, dst: np.ndarray
) -> None:  # pragma: no cover - compiled
    """``dst[:hi - lo] = half[lo:hi]`` converted from float16 bits.

    Parameters
    ----------
    half : np.ndarray
        Shape: (n, dim), uint16.
    dst : np.ndarray
        Shape: (>= hi - lo, dim), float32. Written.
    """
    for r in range(hi - lo):
        for k in range(half.shape[1]):
            dst[r, k] = _half_bits_to_f32(half[lo + r, k])  # type: ignore[call-arg]


@numba.njit(nogil=True, cache=True)
def _f16_to_f32(src: np.ndarray, dst: np.ndarray) -> None:  # pragma: no cover - compiled
    """Exact IEEE half -> single conversion (every half, subnormals included).

    Parameters
    ----------
    src : np.ndarray
        Shape: (n,), uint16: the bits of float16 values.
    dst : np.ndarray
        Shape: (n,), float32. Written.
    """
    for i in range(src.shape[0]):
        dst[i] = _half_bits_to_f32(src[i])  # type: ignore[call-arg]
