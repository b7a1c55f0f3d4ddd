"""Token pooling: Ward hierarchical clustering of each document's tokens.

Per document (as PyLate's ``pool_embeddings_hierarchical``, with the same
clusters as scipy): cosine distances ``1 - cos(u, v)`` between the tokens to
pool, Ward linkage on them (``scipy.cluster.hierarchy.linkage(condensed,
method="ward")``), a cut into ``max(n // pool_factor, 1)`` clusters
(``fcluster(..., criterion="maxclust")``), each cluster replaced by the mean of
its members. The first ``protected_tokens`` tokens are kept as they are.

The whole batch is clustered by one numba kernel (``nogil``; the batch is split
over the BLAS thread count: ``threadpoolctl``'s view, at most the CPUs) that reproduces
scipy's algorithm step by step: the nearest-neighbour chain with the
Lance-Williams update for Ward applied to the cosine distances as given (not
to Euclidean ones), merges sorted by height (stable) and the maxclust cut, which
for distinct heights is "apply the ``n - k`` lowest merges". Distances are
computed in float64. Documents whose merge
heights tie exactly may be cut differently from scipy.

Output order per document: the protected tokens, then one vector per cluster,
clusters ordered by their first (lowest-index) member token.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numba
import numpy as np

from mvr._config import PoolingConfig
from mvr._multivectors import MultiVectors, as_multivectors
from mvr.errors import ConfigError, InvalidVectorsError

__all__ = ["pool_tokens"]

# Batches are split over _num_threads() threads (the numba kernel releases
# the GIL) when each thread gets at least this many documents.
_MIN_DOCS_PER_THREAD = 32


def pool_tokens(
    vectors: Any,
    pool_factor: int | PoolingConfig = 2,
    protected_tokens: int | None = None,
    normalize: bool | None = None,
) -> Any:
    """Pool each document's token vectors by Ward clustering on cosine distance.

    Parameters
    ----------
    vectors : MultiVectors, sequence of np.ndarray, or np.ndarray
        A batch (item ``i`` of shape (t_i, dim); a (n, t, dim) array is a batch of
        n equal-length items) or a single document of shape (t, dim). float16 or
        float32.
    pool_factor : int or PoolingConfig
        Tokens merged per cluster: a document with ``m`` tokens to pool keeps
        ``max(m // pool_factor, 1)`` vectors. 1 returns the input unchanged. A
        :class:`mvr.PoolingConfig` gives all three settings at once.
    protected_tokens : int, optional
        The first ``protected_tokens`` tokens of each document are kept unpooled
        (not clustered). Default 0.
    normalize : bool, optional
        Re-normalise each cluster mean to unit length. Default:
        ``PoolingConfig().normalize`` (chosen by measurement, see BENCHMARKS.md).

    Returns
    -------
    MultiVectors or np.ndarray
        Same kind as the input (a sequence gives a MultiVectors), same dtype.
        Item ``i`` has ``min(t_i, p) + k_i`` vectors, ``p = protected_tokens``,
        ``k_i = max((t_i - p) // pool_factor, 1)`` when ``t_i - p >= 2``, else
        ``t_i - p`` (nothing to pool).

    Raises
    ------
    ConfigError
        ``pool_factor`` < 1, ``protected_tokens`` < 0, or settings given twice.
    InvalidVectorsError, EmptyInputError
        Malformed vectors (rank, non-finite values), as for :class:`MultiVectors`.

    Examples
    --------
    >>> doc = np.random.default_rng(0).standard_normal((10, 8)).astype(np.float32)
    >>> pool_tokens(doc, pool_factor=2).shape
    (5, 8)
    """
    config = _resolve_config(pool_factor, protected_tokens, normalize)
    single = isinstance(vectors, np.ndarray) and vectors.ndim == 2
    if single:
        mv = MultiVectors.from_arrays([vectors], dtype=_out_dtype(vectors.dtype))
    elif isinstance(vectors, np.ndarray) and vectors.ndim != 3:
        raise InvalidVectorsError(
            f"expected a (t, dim) array or a batch of them, got an array of shape {vectors.shape}"
        )
    else:
        mv = as_multivectors(vectors, name="vectors")
    if config.pool_factor == 1:
        return vectors if single or isinstance(vectors, MultiVectors) else mv
    pooled = _pool(mv, config)
    return pooled[0] if single else pooled


def _resolve_config(
    pool_factor: int | PoolingConfig, protected_tokens: int | None, normalize: bool | None
) -> PoolingConfig:
    if isinstance(pool_factor, PoolingConfig):
        if protected_tokens is not None or normalize is not None:
            raise ConfigError(
                "pool_tokens: got a PoolingConfig and also protected_tokens/normalize; "
                "expected the settings in one place"
            )
        return pool_factor
    default = PoolingConfig()
    if normalize is not None and not isinstance(normalize, (bool, np.bool_)):
        raise ConfigError(f"normalize: expected a bool, got {normalize!r}")
    return PoolingConfig(
        pool_factor=pool_factor,
        protected_tokens=0 if protected_tokens is None else protected_tokens,
        normalize=default.normalize if normalize is None else bool(normalize),
    )


def _out_dtype(dtype: np.dtype) -> Any:
    return np.float16 if dtype == np.float16 else np.float32


def pooled_lengths(lengths: np.ndarray, pool_factor: int, protected_tokens: int) -> np.ndarray:
    """Vectors per document after pooling.

    Parameters
    ----------
    lengths : np.ndarray
        Shape: (n,). Token counts.

    Returns
    -------
    np.ndarray
        Shape: (n,), int64.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    kept = np.minimum(lengths, protected_tokens)
    m = lengths - kept
    k = np.where(m >= 2, np.maximum(m // pool_factor, 1), m)
    return kept + k


def _pool(mv: MultiVectors, config: PoolingConfig) -> MultiVectors:
    lengths = mv.lengths
    out_lengths = pooled_lengths(lengths, config.pool_factor, config.protected_tokens)
    out_offsets = np.zeros(len(mv) + 1, dtype=np.int64)
    np.cumsum(out_lengths, out=out_offsets[1:])
    out = np.empty((int(out_offsets[-1]), mv.dim), dtype=np.float32)
    vectors = np.ascontiguousarray(mv.vectors.astype(np.float32, copy=False))
    max_len = int(lengths.max()) if len(mv) else 0

    def run(d0: int, d1: int) -> None:  # documents d0..d1-1; the kernel releases the GIL
        lo, o = mv.offsets[d0], out_offsets[d0]
        _pool_batch(
            vectors[lo : mv.offsets[d1]], mv.offsets[d0 : d1 + 1] - lo,
            out_offsets[d0 : d1 + 1] - o, config.protected_tokens, config.normalize, max_len,
            out[o : out_offsets[d1]],
        )

    chunks = _chunks(lengths, _num_threads())
    if len(chunks) == 1:
        run(*chunks[0])
    else:
        with ThreadPoolExecutor(len(chunks)) as pool:
            list(pool.map(lambda c: run(*c), chunks))
    return MultiVectors(out.astype(mv.dtype, copy=False), out_offsets, validate=False)


def _chunks(lengths: np.ndarray, threads: int) -> list[tuple[int, int]]:
    """Split documents into ``threads`` ranges of about equal work (sum of t^2).

    Batches under ``_MIN_DOCS_PER_THREAD`` documents per thread stay in one range.
    """
    n = len(lengths)
    threads = max(1, min(threads, n // _MIN_DOCS_PER_THREAD))
    if threads == 1:
        return [(0, n)]
    work = np.cumsum(lengths.astype(np.float64) ** 2)
    cuts = np.searchsorted(work, work[-1] * np.arange(1, threads) / threads)
    bounds = [0, *sorted({int(c) for c in cuts if 0 < c < n}), n]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


# ---------------------------------------------------------------------- numba kernels


@numba.njit(nogil=True, cache=True)
def _pool_batch(
    vectors: np.ndarray,
    offsets: np.ndarray,
    out_offsets: np.ndarray,
    protected: int,
    normalize: bool,
    max_len: int,
    out: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Pool every document of a batch.

    Parameters
    ----------
    vectors : np.ndarray
        Shape: (total_tokens, dim), float32.
    offsets, out_offsets : np.ndarray
        Shape: (n + 1,). Input and output item offsets (see ``pooled_lengths``).
    out : np.ndarray
        Shape: (out_offsets[-1], dim), float32. Written.
    """
    dim = vectors.shape[1]
    unit = np.empty(max_len * dim, dtype=np.float64)
    gram = np.empty(max_len * max_len, dtype=np.float64)
    labels = np.empty(max_len, dtype=np.int64)
    for doc in range(offsets.shape[0] - 1):
        lo, hi, o = offsets[doc], offsets[doc + 1], out_offsets[doc]
        p = min(protected, hi - lo)
        out[o : o + p] = vectors[lo : lo + p]
        m, k = hi - lo - p, out_offsets[doc + 1] - o - p
        tokens = vectors[lo + p : hi]
        if k == m:
            out[o + p : o + p + m] = tokens
            continue
        x = unit[: m * dim].reshape(m, dim)
        _unit_rows(tokens, x)
        dist = gram[: m * m].reshape(m, m)
        _cosine_distances(x, dist)
        _ward_maxclust(dist, k, labels[:m])
        _cluster_means(tokens, labels[:m], k, normalize, out[o + p : o + p + k])


@numba.njit(nogil=True, cache=True)
def _unit_rows(tokens: np.ndarray, x: np.ndarray) -> None:  # pragma: no cover - compiled
    """x[i] = tokens[i] / ||tokens[i]|| in float64 (a zero row stays zero)."""
    for i in range(tokens.shape[0]):
        s = 0.0
        for c in range(tokens.shape[1]):
            v = np.float64(tokens[i, c])
            x[i, c] = v
            s += v * v
        inv = 1.0 / np.sqrt(s) if s > 0.0 else 0.0
        for c in range(tokens.shape[1]):
            x[i, c] *= inv


@numba.njit(nogil=True, cache=True, fastmath=True)
def _cosine_distances(x: np.ndarray, dist: np.ndarray) -> None:  # pragma: no cover - compiled
    """dist[i, j] = 1 - <x[i], x[j]> for unit rows x (m, dim) -> dist (m, m), float64.

    Plain loops with a 4 x 4 register block rather than BLAS: a (150, 128) GEMM is
    too small to gain from BLAS threads, and on a loaded 2-core machine their
    synchronisation costs more than the product itself.
    """
    m, dim = x.shape
    mb = m - m % 4
    for i0 in range(0, mb, 4):
        for j0 in range(i0, mb, 4):
            _gram_block(x, i0, j0, dist)
    for i in range(m):  # rows/columns past the last full block
        for j in range(max(i, mb), m):
            s = 0.0
            for c in range(dim):
                s += x[i, c] * x[j, c]
            dist[i, j] = s
    for i in range(m):
        dist[i, i] = 0.0
        for j in range(i + 1, m):
            v = 1.0 - dist[i, j]
            dist[i, j] = v
            dist[j, i] = v


@numba.njit(nogil=True, cache=True, fastmath=True)
def _gram_block(x: np.ndarray, i0: int, j0: int, g: np.ndarray) -> None:  # pragma: no cover
    """g[i0:i0+4, j0:j0+4] = x[i0:i0+4] @ x[j0:j0+4].T with 16 accumulators."""
    s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = 0.0
    s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = 0.0
    for c in range(x.shape[1]):
        a0, a1, a2, a3 = x[i0, c], x[i0 + 1, c], x[i0 + 2, c], x[i0 + 3, c]
        b0, b1, b2, b3 = x[j0, c], x[j0 + 1, c], x[j0 + 2, c], x[j0 + 3, c]
        s00 += a0 * b0
        s01 += a0 * b1
        s02 += a0 * b2
        s03 += a0 * b3
        s10 += a1 * b0
        s11 += a1 * b1
        s12 += a1 * b2
        s13 += a1 * b3
        s20 += a2 * b0
        s21 += a2 * b1
        s22 += a2 * b2
        s23 += a2 * b3
        s30 += a3 * b0
        s31 += a3 * b1
        s32 += a3 * b2
        s33 += a3 * b3
    g[i0, j0], g[i0, j0 + 1], g[i0, j0 + 2], g[i0, j0 + 3] = s00, s01, s02, s03
    g[i0 + 1, j0], g[i0 + 1, j0 + 1], g[i0 + 1, j0 + 2], g[i0 + 1, j0 + 3] = s10, s11, s12, s13
    g[i0 + 2, j0], g[i0 + 2, j0 + 1], g[i0 + 2, j0 + 2], g[i0 + 2, j0 + 3] = s20, s21, s22, s23
    g[i0 + 3, j0], g[i0 + 3, j0 + 1], g[i0 + 3, j0 + 2], g[i0 + 3, j0 + 3] = s30, s31, s32, s33


@numba.njit(nogil=True, cache=True)
def _ward_maxclust(dist: np.ndarray, k: int, labels: np.ndarray) -> None:  # pragma: no cover
    """Ward linkage + maxclust cut into ``k`` clusters, as scipy computes them.

    Parameters
    ----------
    dist : np.ndarray
        Shape: (m, m), float64, symmetric dissimilarities. Overwritten.
    k : int
        Number of clusters, 1 <= k < m.
    labels : np.ndarray
        Shape: (m,), int64. Written: cluster index per token, clusters numbered
        0..k-1 in order of their first member.
    """
    m = dist.shape[0]
    mx, my, height = _nn_chain_ward(dist)
    order = np.argsort(height, kind="mergesort")  # scipy sorts the merges stably
    parent = np.arange(m)
    for r in range(m - k):  # maxclust with distinct heights: the m - k lowest merges
        a, b = _find(parent, mx[order[r]]), _find(parent, my[order[r]])
        parent[a] = b
    root_label = np.full(m, -1, dtype=np.int64)
    nxt = 0
    for i in range(m):
        r = _find(parent, i)
        if root_label[r] < 0:
            root_label[r] = nxt
            nxt += 1
        labels[i] = root_label[r]


@numba.njit(nogil=True, cache=True)
def _find(parent: np.ndarray, i: int) -> int:  # pragma: no cover - compiled
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@numba.njit(nogil=True, cache=True)
def _nn_chain_ward(dist: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover
    """scipy's ``_hierarchy.nn_chain`` for Ward, on a square matrix.

    Returns the merges in the order found: slots ``x < y`` (a member token of each
    side) and the height, shapes (m - 1,). Same scan order, tie-breaking (strict
    ``<``, previous chain element preferred) and Lance-Williams expression as
    scipy, so the heights are bit-identical for identical distances.
    """
    m = dist.shape[0]
    size = np.ones(m, dtype=np.int64)
    chain = np.empty(m, dtype=np.int64)
    mx = np.empty(m - 1, dtype=np.int64)
    my = np.empty(m - 1, dtype=np.int64)
    height = np.empty(m - 1, dtype=np.float64)
    length = 0
    for step in range(m - 1):
        if length == 0:
            for i in range(m):
                if size[i] > 0:
                    chain[0] = i
                    break
            length = 1
        while True:
            x = chain[length - 1]
            y = -1
            best = np.inf
            if length > 1:
                y = chain[length - 2]
                best = dist[x, y]
            for i in range(m):
                if size[i] == 0 or i == x:
                    continue
                if dist[x, i] < best:
                    best = dist[x, i]
                    y = i
            if length > 1 and y == chain[length - 2]:
                break
            chain[length] = y
            length += 1
        length -= 2
        if x > y:
            x, y = y, x
        nx, ny = size[x], size[y]
        mx[step], my[step], height[step] = x, y, best
        size[x] = 0
        size[y] = nx + ny
        for i in range(m):
            ni = size[i]
            if ni == 0 or i == y:
                continue
            t = 1.0 / (nx + ny + ni)
            d_xi, d_yi = dist[i, x], dist[i, y]
            d = np.sqrt((ni + nx) * t * d_xi * d_xi + (ni + ny) * t * d_yi * d_yi - ni * t * best * best)
            dist[i, y] = d
            dist[y, i] = d
    return mx, my, height


@numba.njit(nogil=True, cache=True)
def _cluster_means(
    tokens: np.ndarray, labels: np.ndarray, k: int, normalize: bool, out: np.ndarray
) -> None:  # pragma: no cover - compiled
    """out[c] = mean of tokens with label c (float64 sums), optionally unit-normalised.

    Shapes: tokens (m, dim), labels (m,), out (k, dim).
    """
    dim = tokens.shape[1]
    sums = np.zeros((k, dim), dtype=np.float64)
    counts = np.zeros(k, dtype=np.int64)
    for i in range(tokens.shape[0]):
        c = labels[i]
        counts[c] += 1
        for j in range(dim):
            sums[c, j] += tokens[i, j]
    for c in range(k):
        scale = 1.0 / counts[c]
        if normalize:
            s = 0.0
            for j in range(dim):
                s += sums[c, j] * sums[c, j]
            if s > 0.0:
                scale = 1.0 / np.sqrt(s)
        for j in range(dim):
            out[c, j] = sums[c, j] * scale


def _num_threads() -> int:
    """Threads for pooling: the process's CPU affinity, capped by OMP_NUM_THREADS when set
    (torch is not imported here: ``import serving`` must stay free of it)."""
    import os

    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        n = min(n, int(env))
    return max(1, n)
