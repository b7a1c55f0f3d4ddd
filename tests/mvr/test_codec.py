"""The token codec (centroid ids + scalar-quantised residuals) and the approximate
MaxSim over centroid ids, against straightforward references."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "fixtures"))
from index_testlib import (  # noqa: E402
    clustered_tokens,
    small_config,
)

from mvr import FirstStageConfig, MultiVectors  # noqa: E402
from mvr._approx import centroid_scores, query_centroid_similarities  # noqa: E402
from mvr._codec import TokenCodec, choose_num_centroids, residual_code_size  # noqa: E402
from mvr.errors import ConfigError, CorruptIndexError, DimensionMismatchError  # noqa: E402


def _tokens(n: int = 4000, dim: int = 32, seed: int = 0) -> np.ndarray:
    return clustered_tokens(n, dim, seed)


def test_code_sizes_and_centroid_count() -> None:
    assert residual_code_size(384, "res4") == 192 and residual_code_size(384, "res8") == 384
    assert choose_num_centroids(131_072, 4096) == 4096
    assert choose_num_centroids(1000, 4096) == 16  # >= 32 points per centroid
    assert choose_num_centroids(5, 4096) == 1
    with pytest.raises(ConfigError, match="expected one of"):
        residual_code_size(384, "res3")


@pytest.mark.parametrize("dtype,bound", [("res4", 0.06), ("res8", 0.004)])
def test_round_trip_error_is_bounded_and_ids_are_nearest(dtype: str, bound: float) -> None:
    x = _tokens()
    codec = TokenCodec.train(x, dtype=dtype, num_centroids=64)
    cids, codes = codec.encode(x)
    assert codes.shape == (len(x), residual_code_size(x.shape[1], dtype)) and codes.dtype == np.uint8
    # the id is the nearest centroid (L2), as the brute force says
    d2 = ((x[:, None, :] - codec.centroids[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(cids, d2.argmin(1))
    back = codec.decode(cids, codes)
    err = np.abs(back - x)
    # per dimension: at most half a quantisation step inside the trained range
    assert err.mean() < bound / 2 and np.quantile(err, 0.99) < bound * 2
    assert ((back * x).sum(1) / np.linalg.norm(back, axis=1)).min() > (0.95 if dtype == "res4" else 0.999)


def test_save_load_is_identical_and_damage_is_refused(tmp_path: Path) -> None:
    x = _tokens(1200)
    codec = TokenCodec.train(x, dtype="res4", num_centroids=16)
    codec.save(tmp_path / "c.faiss")
    again = TokenCodec.load(tmp_path / "c.faiss", "res4")
    a, b = codec.encode(x), again.encode(x)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    raw = (tmp_path / "c.faiss").read_bytes()
    (tmp_path / "bad.faiss").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CorruptIndexError, match="bad.faiss"):
        TokenCodec.load(tmp_path / "bad.faiss", "res4")
    with pytest.raises(CorruptIndexError, match="expected 32 bytes per res8 code at dim 32, got 16"):
        TokenCodec.load(tmp_path / "c.faiss", "res8")  # a res4 codec read as res8
    with pytest.raises(DimensionMismatchError, match=r"expected shape \(n, 32\)"):
        codec.encode(x[:, :8])
    with pytest.raises(CorruptIndexError, match="centroid ids"):
        codec.decode(np.array([99]), a[1][:1])


def test_centroid_scores_match_a_per_pair_reference() -> None:
    rng = np.random.default_rng(3)
    centroids = rng.standard_normal((20, 8)).astype(np.float32)
    q = MultiVectors.from_arrays([rng.standard_normal((t, 8)).astype(np.float32) for t in (3, 1, 4)])
    lens = rng.integers(1, 6, size=30)
    cids = rng.integers(0, 20, size=int(lens.sum())).astype(np.uint16)
    starts = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    rows = np.stack([rng.permutation(30)[:7] for _ in range(3)])
    rows[1, 3] = -1
    st = query_centroid_similarities(q.vectors, centroids)
    got = centroid_scores(st, q.offsets, rows, starts, cids)
    for i in range(3):
        for j, r in enumerate(rows[i]):
            if r < 0:
                assert got[i, j] == -np.inf
                continue
            d = centroids[cids[starts[r] : starts[r + 1]]]
            ref = (q[i].astype(np.float64) @ d.astype(np.float64).T).max(1).sum()
            assert abs(got[i, j] - ref) < 1e-4


def _token_clusters(n: int, seed: int, dim: int = 32) -> tuple[list, MultiVectors]:
    """Documents whose tokens lie near one of 150 token "senses" (as real token vectors
    cluster), and queries made of perturbed tokens of random documents."""
    rng = np.random.default_rng(seed)
    senses = rng.standard_normal((150, dim))
    senses /= np.linalg.norm(senses, axis=1, keepdims=True)

    def near(idx: np.ndarray) -> np.ndarray:
        v = senses[idx] + 0.12 * rng.standard_normal((len(idx), dim))
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)

    docs = [(f"doc-{i}", near(rng.integers(0, 150, size=int(rng.integers(2, 13)))))
            for i in range(n)]
    qs = []
    for _ in range(20):
        d = docs[int(rng.integers(n))][1]
        v = d[rng.integers(0, len(d), size=4)] + 0.1 * rng.standard_normal((4, dim))
        qs.append((v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32))
    return docs, MultiVectors.from_arrays(qs)


def test_approximate_stage_keeps_the_exact_top10(tmp_path: Path) -> None:
    """With every document a first-stage candidate (an exact ``flat`` first stage), the
    approximate centroid stage cutting to 100 must keep the exact (exhaustive) top-10 over
    the stored res4 vectors; scores are exact MaxSim over the decoded vectors."""
    from indexing import build_index
    from mvr import maxsim
    from serving import Searcher

    docs, q = _token_clusters(1500, seed=11)
    cfg = small_config(dim=32, table_dtype="res4", default_rerank=100, codec_centroids=256,
                       first_stage=FirstStageConfig(min_rows=10_000),
                       approx_pq=0)  # centroid ids alone (test_approx_codes.py: with codes)
    build_index(tmp_path, docs, None, cfg, progress=False)
    with Searcher.open(tmp_path) as s:
        assert s.codec is not None and s.codec.num_centroids == 256
        assert s.stats()["first_stage"] == ["flat"]
        exh = s.exhaustive(q, k=10)
        res = s.search(q, k=10, candidates=len(docs))
        cut = s.search(q, k=10, candidates=len(docs), rerank_candidates=30)
        decoded = s.store.get(np.arange(len(docs)))
    ref = maxsim(q, decoded)
    hits = [len(set(exh.ids[i]) & set(res.ids[i])) / 10 for i in range(len(q))]
    assert np.mean(hits) >= 0.95, np.mean(hits)
    assert np.mean([len(set(exh.ids[i]) & set(cut.ids[i])) / 10 for i in range(len(q))]) < 1.0
    row = {d: j for j, d in enumerate(i for i, _ in docs)}
    for i in range(len(q)):
        np.testing.assert_allclose(res.scores[i], ref[i, [row[d] for d in res.ids[i]]], atol=1e-4)


def test_default_first_stage_is_compact_faiss_above_min_rows(tmp_path: Path) -> None:
    """Above ``min_rows`` a segment gets the default faiss factory (4-bit PQ fast-scan):
    its RAM is its file, a small fraction of the float32 FDEs."""
    from indexing import build_index
    from serving import Searcher

    docs, q = _token_clusters(1200, seed=5)
    cfg = small_config(dim=32, table_dtype="res4", first_stage=FirstStageConfig(min_rows=1000))
    build_index(tmp_path, docs, None, cfg, progress=False)
    with Searcher.open(tmp_path) as s:
        stage = s.first_stage.parts[0][1]
        assert stage.kind == "faiss" and stage._no_params  # PQ fast-scan, scanned in full
        assert stage.nbytes < 0.25 * len(docs) * cfg.fde.output_dim * 4
        res = s.search(q, k=10)
        assert all(len(ids) == 10 for ids in res.ids)
        assert not (tmp_path / "segments" / "seg-000001" / "fde.zarr").exists()


def test_tombstones_are_honoured_inside_the_compact_first_stage(tmp_path: Path) -> None:
    from indexing import IndexWriter, build_index
    from serving import Searcher

    docs, q = _token_clusters(1200, seed=8)
    cfg = small_config(dim=32, table_dtype="res4", first_stage=FirstStageConfig(min_rows=1000))
    build_index(tmp_path, docs, None, cfg, progress=False)
    with Searcher.open(tmp_path) as s:
        before = s.search(q, k=5)
    gone = sorted({ids[0] for ids in before.ids})
    with IndexWriter(tmp_path) as w:
        w.delete(gone)
    with Searcher.open(tmp_path) as s:
        after = s.search(q, k=5)
        first = s.search(q, k=50, rerank=False)
    assert not set(gone) & {d for ids in after.ids + first.ids for d in ids}
    assert all(len(ids) == 5 for ids in after.ids)


@pytest.mark.parametrize(("n", "m_count", "dsub"), [(0, 8, 4), (1, 64, 6), (700, 64, 6), (513, 8, 16)])
def test_pq_encode_matches_faiss(n: int, m_count: int, dsub: int) -> None:
    """pq_encode (batched GEMMs per block of rows) gives faiss's own PQ codes: the nearest
    centroid per sub-vector, across block boundaries (256 rows) and for empty input."""
    import faiss

    from mvr._codec import pq_encode

    rng = np.random.default_rng(n + m_count)
    pq = faiss.ProductQuantizer(m_count * dsub, m_count, 8)
    pq.train(rng.standard_normal((4096, m_count * dsub)).astype(np.float32))
    cents = faiss.vector_to_array(pq.centroids).reshape(m_count, 256, dsub)
    x = rng.standard_normal((n, m_count * dsub)).astype(np.float32)
    got = pq_encode(x, cents)
    assert got.shape == (n, m_count) and got.dtype == np.uint8
    if n:
        np.testing.assert_array_equal(got, pq.compute_codes(x))
