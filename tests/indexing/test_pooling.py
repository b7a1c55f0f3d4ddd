"""Token pooling against scipy's Ward linkage + maxclust cut on the same distances."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.cluster.hierarchy import fcluster, linkage

import indexing
from indexing import pool_tokens
from mvr import MultiVectors, PoolingConfig
from mvr.errors import ConfigError, InvalidVectorsError


def _scipy_pool(tokens: np.ndarray, pool_factor: int, normalize: bool) -> np.ndarray:
    """PyLate's recipe with scipy: Ward on 1 - cos, maxclust cut, member means.

    Clusters ordered by their first member (the documented output order).
    """
    x = tokens.astype(np.float64)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    dist = 1.0 - unit @ unit.T
    m = len(x)
    k = max(m // pool_factor, 1)
    labels = fcluster(linkage(dist[np.triu_indices(m, 1)], method="ward"), t=k, criterion="maxclust")
    assert len(np.unique(labels)) == k  # continuous random data: no tied heights
    order = sorted(np.unique(labels), key=lambda lab: int(np.flatnonzero(labels == lab)[0]))
    means = np.stack([x[labels == lab].mean(axis=0) for lab in order])
    if normalize:
        means /= np.linalg.norm(means, axis=1, keepdims=True)
    return means


def _docs(rng: np.random.Generator, n: int, lo: int, hi: int, dim: int, clustered: bool = False):
    docs = []
    for _ in range(n):
        t = int(rng.integers(lo, hi + 1))
        if clustered:  # tokens around a few topic directions, like real contextual embeddings
            centers = rng.standard_normal((max(t // 6, 1), dim))
            x = centers[rng.integers(0, len(centers), t)] + 0.35 * rng.standard_normal((t, dim))
        else:
            x = rng.standard_normal((t, dim))
        docs.append((x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32))
    return docs


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("clustered", [False, True])
def test_same_clusters_as_scipy_ward(normalize: bool, clustered: bool) -> None:
    rng = np.random.default_rng(7 + clustered)
    docs = _docs(rng, 40, 2, 256, 48, clustered)
    pooled = pool_tokens(docs, pool_factor=2, normalize=normalize)
    assert isinstance(pooled, MultiVectors) and len(pooled) == len(docs)
    for i, doc in enumerate(docs):
        np.testing.assert_allclose(pooled[i], _scipy_pool(doc, 2, normalize), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pool_factor", [3, 4, 7])
def test_other_pool_factors_match_scipy(pool_factor: int) -> None:
    rng = np.random.default_rng(pool_factor)
    docs = _docs(rng, 15, 2, 180, 32)
    pooled = pool_tokens(MultiVectors.from_arrays(docs), pool_factor=pool_factor, normalize=False)
    for i, doc in enumerate(docs):
        np.testing.assert_allclose(pooled[i], _scipy_pool(doc, pool_factor, False), rtol=1e-5, atol=1e-6)


def test_vector_counts() -> None:
    rng = np.random.default_rng(1)
    lengths = [0, 1, 2, 3, 4, 5, 9, 10, 11, 64, 255]
    docs = [rng.standard_normal((t, 8)).astype(np.float32) for t in lengths]
    for pf, prot in [(2, 0), (3, 0), (2, 1), (4, 3)]:
        pooled = pool_tokens(docs, pool_factor=pf, protected_tokens=prot)
        expected = []
        for t in lengths:
            kept, rest = min(t, prot), t - min(t, prot)
            expected.append(kept + (max(rest // pf, 1) if rest >= 2 else rest))
        assert pooled.lengths.tolist() == expected


def test_protected_tokens_untouched_and_rest_pooled_alone() -> None:
    rng = np.random.default_rng(2)
    docs = _docs(rng, 12, 1, 90, 16)
    pooled = pool_tokens(docs, pool_factor=2, protected_tokens=3, normalize=True)
    for i, doc in enumerate(docs):
        p = min(3, len(doc))
        assert np.array_equal(pooled[i][:p], doc[:p])
        if len(doc) - p >= 2:
            np.testing.assert_allclose(pooled[i][p:], _scipy_pool(doc[p:], 2, True), rtol=1e-5, atol=1e-6)
        else:
            assert np.array_equal(pooled[i][p:], doc[p:])


def test_pool_factor_one_is_identity() -> None:
    rng = np.random.default_rng(3)
    mv = MultiVectors.from_arrays(_docs(rng, 4, 1, 20, 8))
    assert pool_tokens(mv, pool_factor=1) is mv
    single = mv[0]
    assert pool_tokens(single, pool_factor=1) is single
    as_list = pool_tokens(mv.to_list(), pool_factor=1)
    assert np.array_equal(as_list.vectors, mv.vectors)


def test_single_array_in_array_out_and_dtype_kept() -> None:
    rng = np.random.default_rng(4)
    doc = _docs(rng, 1, 50, 50, 24)[0]
    out = pool_tokens(doc, pool_factor=2, normalize=False)
    assert isinstance(out, np.ndarray) and out.shape == (25, 24) and out.dtype == np.float32
    np.testing.assert_allclose(out, _scipy_pool(doc, 2, False), rtol=1e-5, atol=1e-6)
    half = pool_tokens(doc.astype(np.float16), pool_factor=2)
    assert half.dtype == np.float16 and half.shape == (25, 24)
    batch16 = pool_tokens(MultiVectors.from_arrays([doc.astype(np.float16)]), pool_factor=2)
    assert batch16.dtype == np.float16


def test_normalize_gives_unit_vectors_and_means_otherwise() -> None:
    rng = np.random.default_rng(5)
    docs = _docs(rng, 5, 10, 60, 16)
    unit = pool_tokens(docs, pool_factor=4, normalize=True)
    np.testing.assert_allclose(np.linalg.norm(unit.vectors, axis=1), 1.0, rtol=1e-5)
    plain = pool_tokens(docs, pool_factor=4, normalize=False)
    assert (np.linalg.norm(plain.vectors, axis=1) < 1.0 - 1e-3).any()


def test_accepts_pooling_config_and_default_normalize() -> None:
    rng = np.random.default_rng(6)
    docs = _docs(rng, 6, 5, 40, 16)
    cfg = PoolingConfig(pool_factor=3, protected_tokens=1, normalize=False)
    a = pool_tokens(docs, cfg)
    b = pool_tokens(docs, pool_factor=3, protected_tokens=1, normalize=False)
    assert np.array_equal(a.vectors, b.vectors)
    default = pool_tokens(docs)
    explicit = pool_tokens(docs, pool_factor=2, normalize=PoolingConfig().normalize)
    assert np.array_equal(default.vectors, explicit.vectors)
    assert indexing.pool_tokens is pool_tokens and "pool_tokens" in indexing.__all__


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"pool_factor": 0}, ConfigError, "pool_factor: expected a positive int, got 0"),
        ({"pool_factor": 2.5}, ConfigError, "pool_factor"),
        ({"protected_tokens": -1}, ConfigError, "protected_tokens: expected an int >= 0, got -1"),
        ({"normalize": "yes"}, ConfigError, "normalize: expected a bool"),
        ({"pool_factor": PoolingConfig(), "normalize": True}, ConfigError, "in one place"),
    ],
)
def test_bad_settings(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        pool_tokens([np.ones((4, 3), np.float32)], **kwargs)


def test_bad_vectors() -> None:
    with pytest.raises(InvalidVectorsError, match=r"got an array of shape \(4,\)"):
        pool_tokens(np.ones(4, np.float32))
    with pytest.raises(InvalidVectorsError, match="2-D"):
        pool_tokens([np.ones(4, np.float32)])
    bad = np.ones((5, 4), np.float32)
    bad[3, 1] = np.inf
    with pytest.raises(InvalidVectorsError, match="non-finite"):
        pool_tokens(bad)
