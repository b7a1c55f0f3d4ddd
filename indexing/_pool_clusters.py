"""Token pooling that also says which tokens each pooled vector merged.

:func:`pool_with_clusters` pools one document exactly as :func:`indexing.pool_tokens`
does (the vectors come from that function itself) and returns, per input token,
the index of the pooled vector it went into. The labels come from the same numba
kernels (cosine distances in float64, Ward linkage, maxclust cut), and the
function checks them against the vectors: the mean of each label's tokens must
be the pooled vector. Explanations (``POST /explain``) use it to map a stored
vector back to the wordpieces it stands for.
"""

from __future__ import annotations

import numpy as np

from indexing._pooling import (
    _cosine_distances,
    _unit_rows,
    _ward_maxclust,
    pool_tokens,
    pooled_lengths,
)
from mvr._config import PoolingConfig
from mvr.errors import InvalidVectorsError

__all__ = ["pool_with_clusters"]

# float32 means vs float64 sums rounded once: agreement to this is "the same vector"
_MEAN_TOLERANCE = 1e-4


def pool_with_clusters(tokens: np.ndarray, config: PoolingConfig) -> tuple[np.ndarray, np.ndarray]:
    """Pool one document's token vectors and keep the cluster of every token.

    Parameters
    ----------
    tokens : np.ndarray
        Shape: (t, dim), float32. One document's token vectors, in order.
    config : PoolingConfig
        The index's pooling settings (``manifest["config"]["pooling"]``).

    Returns
    -------
    pooled : np.ndarray
        Shape: (k, dim), float32; identical to ``pool_tokens(tokens, config)``.
    labels : np.ndarray
        Shape: (t,), int64. ``labels[i]`` is the row of ``pooled`` that token ``i``
        went into: the protected tokens first (one each), then the clusters,
        numbered by their first member (the order ``pool_tokens`` writes them in).

    Raises
    ------
    InvalidVectorsError
        ``tokens`` is not a non-empty (t, dim) array.

    Examples
    --------
    >>> x = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)
    >>> pooled, labels = pool_with_clusters(x, PoolingConfig(pool_factor=2))
    >>> pooled.shape, labels.shape
    ((3, 4), (6,))
    """
    if not isinstance(tokens, np.ndarray) or tokens.ndim != 2 or tokens.shape[0] == 0:
        shape = getattr(tokens, "shape", type(tokens).__name__)
        raise InvalidVectorsError(
            f"tokens: expected a non-empty (t, dim) array, got {shape}"
        )
    tokens = np.ascontiguousarray(tokens, dtype=np.float32)
    t = tokens.shape[0]
    pooled = np.asarray(pool_tokens(tokens, config), dtype=np.float32)
    labels = np.arange(t, dtype=np.int64)
    p = min(config.protected_tokens, t)
    m = t - p
    k = int(pooled_lengths(np.array([t]), config.pool_factor, config.protected_tokens)[0]) - p
    if config.pool_factor > 1 and k < m:
        rest = tokens[p:]
        x = np.empty((m, tokens.shape[1]), dtype=np.float64)
        _unit_rows(rest, x)
        dist = np.empty((m, m), dtype=np.float64)
        _cosine_distances(x, dist)
        cut = np.empty(m, dtype=np.int64)
        _ward_maxclust(dist, k, cut)
        labels[p:] = p + cut
    _check_labels(tokens, labels, pooled, config.normalize)
    return pooled, labels


def _check_labels(tokens: np.ndarray, labels: np.ndarray, pooled: np.ndarray, normalize: bool) -> None:
    """The mean (or unit mean) of each label's tokens is its pooled vector."""
    k = pooled.shape[0]
    if labels.max() + 1 != k:
        raise RuntimeError(f"pooling labels: expected {k} clusters, got {int(labels.max()) + 1}")
    sums = np.zeros((k, tokens.shape[1]), dtype=np.float64)
    np.add.at(sums, labels, tokens.astype(np.float64))
    counts = np.bincount(labels, minlength=k).astype(np.float64)[:, None]
    means = sums / counts
    if normalize:
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        means = np.where(norms > 0, sums / np.where(norms > 0, norms, 1.0), means)
    err = float(np.abs(means - pooled).max())
    if err > _MEAN_TOLERANCE:
        raise RuntimeError(
            f"pooling labels do not reproduce pool_tokens: max |mean - pooled| expected <= "
            f"{_MEAN_TOLERANCE}, got {err:.3g}"
        )
