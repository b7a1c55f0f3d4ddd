"""MUVERA fixed-dimensional encodings (FDEs), batched.

Faithful to Google's reference, graph-mining
``sketching/point_cloud/fixed_dimensional_encoding.cc``:

* repetition ``r`` draws its random matrices from a generator seeded with
  ``seed + r``;
* SimHash: a ``(dim, k)`` standard-Gaussian matrix applied to the ORIGINAL
  vectors; the partition index is the Gray-code decoding of the sign bits
  (``index = (index << 1) + (bit ^ (index & 1))``, first projection most
  significant; a bit is set when the projection is ``> 0``);
* inner projection: identity (``projection_dim=None``) or a count sketch
  ("AMS"): input coordinate ``i`` goes to one random output column with one
  random sign, unscaled;
* queries SUM the projected points of a partition, documents AVERAGE them;
* ``fill_empty_partitions`` (documents only): an empty partition takes the
  projected point whose sign bits are nearest in Hamming distance to the
  partition (first minimum in token order); for queries it is an error;
* an optional final count sketch of the whole FDE, seeded with ``seed``.

Layout of one FDE: ``[rep 0: partition 0 (d_proj), partition 1, ...], [rep 1: ...]``.

Random generation follows the convention of the Python port ``muvera-python``
(numpy ``default_rng``), not the C++ ``mt19937`` stream: the SimHash matrix is
``default_rng(seed + r).normal(size=(dim, k))``; the AMS sketch draws, from a
fresh ``default_rng(seed + r)``, the columns ``integers(0, d_proj, dim)`` then
the signs ``choice([-1, 1], dim)``; the final sketch does the same with
``default_rng(seed)`` over the intermediate coordinates. :func:`fde_matrices`
returns these arrays so that independent implementations can be fed them.

Implementation: documents are processed in chunks of about ``_CHUNK_TOKENS``
tokens (bounded memory), up to two chunks at a time on worker threads (the GEMM
and the numba kernels release the GIL; BLAS is held to one thread per worker meanwhile). Per chunk, the SimHash of every token
for all repetitions at once is one float32 GEMM ``(tokens, dim) @ (dim, R * k)``;
numba kernels then derive sign codes and partition indices, and per document
(identity) sum the points of each partition in place, or (count sketch)
transpose the tokens once, sketch all of them per repetition vectorised over
tokens, and sum the sketched points per partition; averages and fills follow.
Float results equal the reference's up to float32 rounding.

An empty document (zero tokens) encodes to the zero vector (the reference has
no defined output for it).
"""

from __future__ import annotations

import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np
from threadpoolctl import threadpool_limits

from mvr._config import FDEConfig
from mvr._multivectors import MultiVectors, as_multivectors
from mvr.errors import ConfigError, EmptyInputError

__all__ = ["FDEMatrices", "encode_document_fdes", "encode_query_fdes", "fde_matrices"]

#: Tokens per GEMM chunk: bounds the working memory (chunk vectors + sketches).
_CHUNK_TOKENS = 8192
_SEED_MOD = 1 << 64
#: Worker threads over chunks (GEMM and kernels release the GIL).
_THREADS = min(2, os.cpu_count() or 1)
#: While the workers run, BLAS is held to one thread each (else every worker's GEMM starts
#: its own BLAS pool and the cores are oversubscribed: measured 9,057 -> 14,505 docs/s on
#: 2 cores). The BLAS thread count is process-global, so calls that change it take turns.
_BLAS_LIMIT_LOCK = threading.Lock()


@dataclass(frozen=True, eq=False)
class FDEMatrices:
    """The random matrices of one FDE configuration (read-only arrays).

    Attributes
    ----------
    simhash : np.ndarray
        Shape: (dim, R * k), float32. Columns ``r * k : (r + 1) * k`` are the
        SimHash matrix of repetition ``r``.
    ams_index : np.ndarray or None
        Shape: (R, dim), int64. Output column of each input coordinate in
        repetition ``r``'s count sketch; ``None`` for the identity projection.
    ams_sign : np.ndarray or None
        Shape: (R, dim), float32, values +-1.
    final_index : np.ndarray or None
        Shape: (R * 2**k * d_proj,), int64. Final count sketch columns; ``None``
        without a final projection.
    final_sign : np.ndarray or None
        Shape: (R * 2**k * d_proj,), float32, values +-1.
    """

    simhash: np.ndarray
    ams_index: np.ndarray | None
    ams_sign: np.ndarray | None
    final_index: np.ndarray | None
    final_sign: np.ndarray | None


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed % _SEED_MOD)


def _count_sketch(seed: int, n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Count sketch ``n_in -> n_out``: a column and a sign per input coordinate."""
    rng = _rng(seed)
    index = rng.integers(0, n_out, size=n_in).astype(np.int64)
    sign = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=n_in)
    return index, sign


def _readonly(a: np.ndarray | None) -> np.ndarray | None:
    if a is not None:
        a.setflags(write=False)
    return a


@functools.lru_cache(maxsize=16)
def _matrices_for(
    dim: int, reps: int, k: int, proj: int | None, final: int | None, seed: int
) -> FDEMatrices:
    simhash = np.empty((dim, reps * k), dtype=np.float32)
    for r in range(reps):
        simhash[:, r * k : (r + 1) * k] = _rng(seed + r).normal(0.0, 1.0, size=(dim, k))
    ams_index = ams_sign = None
    if proj is not None:
        ams_index = np.empty((reps, dim), dtype=np.int64)
        ams_sign = np.empty((reps, dim), dtype=np.float32)
        for r in range(reps):
            ams_index[r], ams_sign[r] = _count_sketch(seed + r, dim, proj)
    final_index = final_sign = None
    if final is not None:
        intermediate = reps * (1 << k) * (dim if proj is None else proj)
        final_index, final_sign = _count_sketch(seed, intermediate, final)
    return FDEMatrices(
        simhash=_readonly(simhash),  # type: ignore[arg-type]
        ams_index=_readonly(ams_index),
        ams_sign=_readonly(ams_sign),
        final_index=_readonly(final_index),
        final_sign=_readonly(final_sign),
    )


def fde_matrices(config: FDEConfig) -> FDEMatrices:
    """The (cached) random matrices that :func:`encode_query_fdes` and
    :func:`encode_document_fdes` use for ``config``.

    ``fill_empty_partitions`` does not change them; configs that differ only in
    it share one cached instance.
    """
    _check_config(config)
    return _matrices_for(
        config.dim,
        config.num_repetitions,
        config.num_simhash_projections,
        config.projection_dim,
        config.final_projection_dim,
        config.seed,
    )


# ---------------------------------------------------------------------- public API
def encode_query_fdes(vectors: MultiVectors | list[np.ndarray], config: FDEConfig) -> np.ndarray:
    """Query FDEs: per repetition and partition, the SUM of the projected points.

    Parameters
    ----------
    vectors : MultiVectors or sequence of np.ndarray
        ``n`` queries; item ``i`` has shape (t_i, config.dim). float16/32/64
        (computed in float32). A query without tokens encodes to zeros.
    config : FDEConfig
        Must have ``fill_empty_partitions=False`` (as in the reference; use
        ``dataclasses.replace(config, fill_empty_partitions=False)``).

    Returns
    -------
    np.ndarray
        Shape: (n, config.output_dim), float32.

    Raises
    ------
    ConfigError
        ``config.fill_empty_partitions`` is on.
    DimensionMismatchError, InvalidVectorsError, EmptyInputError
        Wrong dim, non-2-D items, non-finite values, an empty batch.
    """
    _check_config(config)
    if config.fill_empty_partitions:
        raise ConfigError(
            "encode_query_fdes: expected fill_empty_partitions=False for queries (the reference "
            "rejects it too), got True; use dataclasses.replace(config, "
            "fill_empty_partitions=False)"
        )
    return _encode(vectors, config, average=False, name="queries")


def encode_document_fdes(vectors: MultiVectors | list[np.ndarray], config: FDEConfig) -> np.ndarray:
    """Document FDEs: per repetition and partition, the AVERAGE of the projected points.

    With ``config.fill_empty_partitions`` an empty partition takes the projected
    point whose SimHash sign bits have the smallest Hamming distance to it (the
    first such token).

    Parameters
    ----------
    vectors : MultiVectors or sequence of np.ndarray
        ``n`` documents; item ``i`` has shape (t_i, config.dim). float16/32/64
        (computed in float32). A document without tokens encodes to zeros.
    config : FDEConfig

    Returns
    -------
    np.ndarray
        Shape: (n, config.output_dim), float32.

    Examples
    --------
    >>> cfg = FDEConfig(dim=4, num_repetitions=2, num_simhash_projections=2, projection_dim=3)
    >>> encode_document_fdes([np.ones((5, 4)), np.eye(4)], cfg).shape
    (2, 24)
    """
    _check_config(config)
    return _encode(vectors, config, average=True, name="documents")


# ---------------------------------------------------------------------- driver
def _check_config(config: object) -> None:
    if not isinstance(config, FDEConfig):
        raise ConfigError(f"expected an mvr.FDEConfig, got {type(config).__name__}")


def _encode(vectors: object, config: FDEConfig, *, average: bool, name: str) -> np.ndarray:
    mv = as_multivectors(vectors, dim=config.dim, name=name)
    if len(mv) == 0:
        raise EmptyInputError(f"{name}: expected at least one item, got an empty batch")
    out = np.empty((len(mv), config.output_dim), dtype=np.float32)
    job = _Job(mv, config, fde_matrices(config), average, out)
    chunks = _chunks(mv.offsets, _CHUNK_TOKENS)
    workers = min(_THREADS, len(chunks))
    if workers <= 1:
        job.run(chunks)
    else:  # the GEMM and the numba kernels release the GIL
        with (
            _BLAS_LIMIT_LOCK,
            threadpool_limits(limits=1, user_api="blas"),
            ThreadPoolExecutor(workers) as pool,
        ):
            futures = [pool.submit(job.run, chunks[w::workers]) for w in range(workers)]
            for future in futures:
                future.result()
    return out


@dataclass(frozen=True, eq=False)
class _Job:
    """One encoding call: writes the FDEs of items ``lo:hi`` into ``out[lo:hi]``."""

    mv: MultiVectors
    config: FDEConfig
    m: FDEMatrices
    average: bool
    out: np.ndarray

    def run(self, chunks: list[tuple[int, int]]) -> None:
        """Encode ``chunks`` in turn with one set of scratch buffers (fresh large arrays
        would cost page faults on every chunk)."""
        offsets, cfg = self.mv.offsets, self.config
        tokens = max(int(offsets[hi] - offsets[lo]) for lo, hi in chunks)
        items = max(hi - lo for lo, hi in chunks)
        reps = cfg.num_repetitions
        scratch = _Scratch(
            x=np.empty((tokens, cfg.dim), np.float32),
            sketches=np.empty((tokens, reps * cfg.num_simhash_projections), np.float32),
            codes=np.empty((tokens, reps), np.int32),
            parts=np.empty((tokens, reps), np.int32),
            rows=np.empty((items, cfg.intermediate_dim), np.float32)
            if cfg.final_projection_dim is not None
            else None,
        )
        for lo, hi in chunks:
            self._chunk(lo, hi, scratch)

    def _chunk(self, lo: int, hi: int, scratch: _Scratch) -> None:
        cfg, m, offsets = self.config, self.m, self.mv.offsets
        reps = cfg.num_repetitions
        t0, t1 = int(offsets[lo]), int(offsets[hi])
        n = t1 - t0
        x = self.mv.vectors[t0:t1]
        if x.dtype != np.float32 or not x.flags.c_contiguous:
            x = scratch.x[:n]
            x[...] = self.mv.vectors[t0:t1]
        codes, parts = scratch.codes[:n], scratch.parts[:n]
        sketches = np.matmul(x, m.simhash, out=scratch.sketches[:n])
        _sign_codes(sketches, reps, cfg.num_simhash_projections, codes, parts)
        rows = self.out[lo:hi] if scratch.rows is None else scratch.rows[: hi - lo]
        local = offsets[lo : hi + 1] - t0
        fill = cfg.fill_empty_partitions and self.average
        n_part = cfg.num_partitions
        if m.ams_index is None or m.ams_sign is None:
            _identity_rows(x, codes, parts, local, reps, n_part, self.average, fill, rows)
        else:
            _sketch_rows(
                x,
                codes,
                parts,
                local,
                reps,
                n_part,
                m.ams_index,
                m.ams_sign,
                self.average,
                fill,
                rows,
            )
        if scratch.rows is not None:
            _count_sketch_rows(rows, m.final_index, m.final_sign, self.out[lo:hi])


@dataclass(frozen=True)
class _Scratch:
    """Per-worker buffers, sized for the largest chunk of the call."""

    x: np.ndarray  # (tokens, dim) float32 copy of non-float32 input
    sketches: np.ndarray  # (tokens, R * k)
    codes: np.ndarray  # (tokens, R) int32
    parts: np.ndarray  # (tokens, R) int32
    rows: np.ndarray | None  # (items, intermediate_dim), only with a final projection


def _chunks(offsets: np.ndarray, chunk_tokens: int) -> list[tuple[int, int]]:
    """Split items into consecutive ranges of about ``chunk_tokens`` tokens (>= 1 item each)."""
    n = offsets.shape[0] - 1
    bounds = []
    lo = 0
    while lo < n:
        hi = int(np.searchsorted(offsets, offsets[lo] + chunk_tokens, side="right")) - 1
        hi = min(max(hi, lo + 1), n)
        bounds.append((lo, hi))
        lo = hi
    return bounds


# ---------------------------------------------------------------------- kernels
@numba.njit(nogil=True, cache=True)
def _sign_codes(sketches, reps, k, codes, parts):  # pragma: no cover - numba
    """Per token and repetition: the sign bits (first projection most significant) and
    the partition index, their Gray decoding (running XOR, as ``AppendToGrayCode``).

    Shapes: sketches (t, reps * k) -> codes, parts (t, reps) int32.
    """
    for t in range(sketches.shape[0]):
        srow = sketches[t]
        crow = codes[t]
        prow = parts[t]
        for r in range(reps):
            crow[r] = 0
        for j in range(k):
            for r in range(reps):
                crow[r] = (crow[r] << 1) | (srow[r * k + j] > 0)
        for r in range(reps):
            p = crow[r]
            p ^= p >> 1
            p ^= p >> 2
            p ^= p >> 4
            p ^= p >> 8
            p ^= p >> 16
            prow[r] = p


@numba.njit(nogil=True, cache=True)
def _nearest_token(codes, start, n_tok, r, p):  # pragma: no cover - numba
    """First token (offset from ``start``) whose sign code is nearest in Hamming distance
    to partition ``p``, i.e. to ``p ^ (p >> 1)``, the sign code of p's own points."""
    target = p ^ (p >> 1)
    best = 0
    best_d = 1 << 30
    for t in range(n_tok):
        v = codes[start + t, r] ^ target
        d = 0
        while v:
            v &= v - 1
            d += 1
        if d < best_d:
            best_d = d
            best = t
            if d <= 1:  # an empty partition is at distance >= 1 from every point
                break
    return best


@numba.njit(nogil=True, cache=True)
def _identity_rows(x, codes, parts, offsets, reps, n_part, average, fill, out):  # pragma: no cover
    """FDEs with the identity inner projection, written into ``out``.

    Shapes: x (t, dim) float32; codes, parts (t, reps) int32; offsets (n + 1,);
    out (n, reps * n_part * dim) float32.
    """
    dim = x.shape[1]
    counts = np.empty(n_part, dtype=np.int64)
    width = n_part * dim
    for d in range(offsets.shape[0] - 1):
        start = offsets[d]
        n_tok = offsets[d + 1] - start
        row = out[d]
        row[:] = 0.0
        for r in range(reps if n_tok > 0 else 0):
            base = r * width
            counts[:] = 0
            for t in range(n_tok):
                p = parts[start + t, r]
                counts[p] += 1
                dst = row[base + p * dim : base + (p + 1) * dim]
                src = x[start + t]
                for i in range(dim):
                    dst[i] += src[i]
            for p in range(n_part):
                dst = row[base + p * dim : base + (p + 1) * dim]
                if counts[p] == 0:
                    if fill and n_part > 1:
                        dst[:] = x[start + _nearest_token(codes, start, n_tok, r, p)]
                elif average and counts[p] > 1:
                    c = np.float32(counts[p])
                    for i in range(dim):
                        dst[i] /= c


@numba.njit(nogil=True, cache=True)
def _transpose(src, dst):  # pragma: no cover - numba
    """``dst[:, :a] = src.T`` in 8 x 8 tiles (constant inner loops vectorise).

    Shapes: src (a, b), dst (b, >= a).
    """
    a, b = src.shape
    a8, b8 = a - a % 8, b - b % 8
    for i0 in range(0, a8, 8):
        for j0 in range(0, b8, 8):
            for jj in range(8):
                d = dst[j0 + jj]
                for ii in range(8):
                    d[i0 + ii] = src[i0 + ii, j0 + jj]
    for i in range(a8, a):
        for j in range(b):
            dst[j, i] = src[i, j]
    for i in range(a8):
        for j in range(b8, b):
            dst[j, i] = src[i, j]


@numba.njit(nogil=True, cache=True)
def _sketch_tokens(xt, n_cols, index, sign, yt):  # pragma: no cover - numba
    """``yt[:, :n_cols]`` = count sketch of every token, vectorised over tokens.

    Shapes: xt (dim, >= n_cols) transposed tokens; index, sign (dim,);
    yt (d_proj, >= n_cols).
    """
    yt[:, :n_cols] = 0.0
    for i in range(xt.shape[0]):
        s = sign[i]
        dst = yt[index[i]]
        src = xt[i]
        for t in range(n_cols):
            dst[t] += s * src[t]


@numba.njit(nogil=True, cache=True)
def _sketch_rows(
    x, codes, parts, offsets, reps, n_part, ams_index, ams_sign, average, fill, out
):  # pragma: no cover - numba
    """FDEs with the count-sketch inner projection, written into ``out``.

    Each document's tokens are transposed once; per repetition every token is
    sketched (vectorised over tokens), transposed back and the sketched points are
    summed per partition. Shapes: x (t, dim) float32; codes, parts (t, reps) int32;
    offsets (n + 1,); ams_index, ams_sign (reps, dim); out (n, reps * n_part * d_proj).
    """
    dim = x.shape[1]
    d_proj = out.shape[1] // (reps * n_part)
    max_tok = 0
    for d in range(offsets.shape[0] - 1):
        max_tok = max(max_tok, offsets[d + 1] - offsets[d])
    n_pad = (max_tok + 15) // 16 * 16
    xt = np.zeros((dim, n_pad), dtype=np.float32)
    yt = np.zeros((d_proj, n_pad), dtype=np.float32)
    y = np.zeros((n_pad, d_proj), dtype=np.float32)
    sums = np.empty((n_part, d_proj), dtype=np.float32)
    counts = np.empty(n_part, dtype=np.int64)
    width = n_part * d_proj
    for d in range(offsets.shape[0] - 1):
        start = offsets[d]
        n_tok = offsets[d + 1] - start
        row = out[d]
        if n_tok == 0:
            row[:] = 0.0
            continue
        n_cols = (n_tok + 15) // 16 * 16  # padding columns hold stale finite values, unused
        _transpose(x[start : start + n_tok], xt)
        for r in range(reps):
            _sketch_tokens(xt, n_cols, ams_index[r], ams_sign[r], yt)
            _transpose(yt[:, :n_cols], y)
            sums[:] = 0.0
            counts[:] = 0
            for t in range(n_tok):
                p = parts[start + t, r]
                counts[p] += 1
                src = y[t]
                dst = sums[p]
                for j in range(d_proj):
                    dst[j] += src[j]
            base = r * width
            for p in range(n_part):
                dst = row[base + p * d_proj : base + (p + 1) * d_proj]
                if counts[p] == 0:
                    if fill and n_part > 1:
                        dst[:] = y[_nearest_token(codes, start, n_tok, r, p)]
                    else:
                        dst[:] = 0.0
                else:
                    c = np.float32(counts[p]) if average else np.float32(1.0)
                    for j in range(d_proj):
                        dst[j] = sums[p, j] / c


@numba.njit(nogil=True, cache=True)
def _count_sketch_rows(src, index, sign, out):  # pragma: no cover - numba
    """``out[i] = count_sketch(src[i])`` for every row.

    Shapes: src (n, n_in); index, sign (n_in,); out (n, n_out).
    """
    for d in range(src.shape[0]):
        o = out[d]
        o[:] = 0.0
        s = src[d]
        for j in range(s.shape[0]):
            o[index[j]] += sign[j] * s[j]
