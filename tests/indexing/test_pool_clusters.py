"""pool_with_clusters: the vectors of pool_tokens, and the clusters scipy's Ward cut gives."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from indexing import pool_tokens, pool_with_clusters
from mvr import PoolingConfig
from mvr.errors import InvalidVectorsError


def _unit(rng: np.random.Generator, t: int, dim: int = 12) -> np.ndarray:
    x = rng.standard_normal((t, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _scipy_partition(x: np.ndarray, k: int) -> set[frozenset[int]]:
    """The oracle: scipy Ward on cosine distances, maxclust cut into k clusters."""
    u = x.astype(np.float64) / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    dist = np.clip(1.0 - u @ u.T, 0.0, None)
    np.fill_diagonal(dist, 0.0)
    labels = fcluster(linkage(squareform(dist, checks=False), method="ward"), k, "maxclust")
    return {frozenset(np.flatnonzero(labels == c).tolist()) for c in np.unique(labels)}


@pytest.mark.parametrize("t", [2, 3, 5, 17, 40])
@pytest.mark.parametrize(("factor", "protected", "normalize"), [(2, 0, False), (3, 1, True)])
def test_vectors_are_pool_tokens_and_clusters_are_scipys(t, factor, protected, normalize):
    rng = np.random.default_rng(t * 10 + factor)
    x = _unit(rng, t)
    config = PoolingConfig(pool_factor=factor, protected_tokens=protected, normalize=normalize)
    pooled, labels = pool_with_clusters(x, config)
    np.testing.assert_array_equal(pooled, pool_tokens(x, config))
    assert labels.shape == (t,) and labels.dtype == np.int64
    assert labels[:protected].tolist() == list(range(min(protected, t)))
    rest = x[protected:]
    k = pooled.shape[0] - protected
    got = {frozenset((np.flatnonzero(labels[protected:] == protected + c)).tolist())
           for c in range(k)}
    expected = _scipy_partition(rest, k) if k < len(rest) else {frozenset([i]) for i in range(k)}
    assert got == expected
    # clusters are numbered by their first member, in the order pool_tokens writes them
    firsts = [int(np.flatnonzero(labels == c)[0]) for c in range(pooled.shape[0])]
    assert firsts == sorted(firsts)


def test_pool_factor_one_keeps_every_token_alone():
    x = _unit(np.random.default_rng(3), 6)
    pooled, labels = pool_with_clusters(x, PoolingConfig(pool_factor=1))
    np.testing.assert_array_equal(pooled, x)
    assert labels.tolist() == list(range(6))


def test_rejects_what_is_not_one_document():
    with pytest.raises(InvalidVectorsError, match=r"expected a non-empty \(t, dim\) array, got \(0, 4\)"):
        pool_with_clusters(np.zeros((0, 4), np.float32), PoolingConfig())
    with pytest.raises(InvalidVectorsError, match=r"got \(2, 3, 4\)"):
        pool_with_clusters(np.zeros((2, 3, 4), np.float32), PoolingConfig())
