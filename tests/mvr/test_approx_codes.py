"""Approximate codes (the codec's residual PQ, ``IndexConfig.approx_pq``): the codes
against faiss's own reconstruction, the lookup-table MaxSim against brute force over the
reconstructed vectors, the file round trip, and the index end to end (build, add,
compact, search)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "fixtures"))
from index_testlib import clustered_docs, clustered_tokens, small_config  # noqa: E402

from mvr import FirstStageConfig, IndexConfig, MultiVectors  # noqa: E402
from mvr._approx import (  # noqa: E402
    centroid_scores,
    pq_scores,
    quantize_tables,
    query_centroid_similarities,
)
from mvr._codec import TokenCodec  # noqa: E402
from mvr.errors import ConfigError, CorruptIndexError, DimensionMismatchError  # noqa: E402


def _tokens(n: int = 3000, dim: int = 32, seed: int = 0) -> np.ndarray:
    return clustered_tokens(n, dim, seed)


def _reconstruct(codec: TokenCodec, cids: np.ndarray, acodes: np.ndarray) -> np.ndarray:
    """centroid + the PQ's own decoding of the residual code (faiss, not our tables)."""
    return codec.centroids[cids.astype(np.int64)] + codec.approx.sa_decode(acodes)


def test_codes_reconstruct_closer_than_centroids_alone() -> None:
    x = _tokens()
    codec = TokenCodec.train(x, dtype="res8", num_centroids=32, approx_pq=8)
    assert codec.approx_bytes == 8
    cids, _ = codec.encode(x)
    ac = codec.encode_approx(x, cids)
    assert ac.shape == (len(x), 8) and ac.dtype == np.uint8
    err_c = ((x - codec.centroids[cids.astype(np.int64)]) ** 2).sum(1).mean()
    err_a = ((x - _reconstruct(codec, cids, ac)) ** 2).sum(1).mean()
    assert err_a < 0.5 * err_c, (err_a, err_c)
    with pytest.raises(DimensionMismatchError, match=r"expected vectors \(n, 32\) and n centroid"):
        codec.encode_approx(x[:10], cids[:9])
    plain = TokenCodec.train(x, dtype="res8", num_centroids=32)
    assert plain.approx_bytes == 0
    with pytest.raises(ConfigError, match="approx_pq=0"):
        plain.encode_approx(x, cids)
    with pytest.raises(ConfigError, match="expected a divisor of the token dim 32"):
        TokenCodec.train(x, dtype="res8", num_centroids=32, approx_pq=7)


@pytest.mark.parametrize("qlens", [(3, 9, 17), (8, 1), (16,), (32, 33, 70)])
def test_pq_scores_match_brute_force_over_reconstructed_tokens(qlens: tuple[int, ...]) -> None:
    """Within the 8-bit tables' rounding of brute force; query lengths that are and are
    not multiples of the kernel's 32 lanes (one step, two, three) and the 16-lane step."""
    x = _tokens(2400, seed=4)
    codec = TokenCodec.train(x, dtype="res8", num_centroids=16, approx_pq=4)
    rng = np.random.default_rng(2)
    lens = rng.integers(1, 9, size=60)
    tok = x[: int(lens.sum())]
    cids, _ = codec.encode(tok)
    ac = codec.encode_approx(tok, cids)
    starts = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    q = MultiVectors.from_arrays([rng.standard_normal((t, 32)).astype(np.float32) for t in qlens])
    rows = np.stack([rng.permutation(60)[:11] for _ in qlens])
    rows[0, 4] = -1
    st = query_centroid_similarities(q.vectors, codec.centroids)
    lut = codec.approx_tables(q.vectors)
    got = pq_scores(st, lut, q.offsets, rows, starts, cids, ac)
    rec = _reconstruct(codec, cids, ac).astype(np.float64)
    for i in range(len(qlens)):
        lo, hi = q.offsets[i], q.offsets[i + 1]
        # the 8-bit tables put each of the 4 entries of a token's sum within scale / 2
        _, _, scale = quantize_tables(lut[:, :, lo:hi], 8 * (-(-(hi - lo) // 8)))
        bound = float((4 * scale / 2).sum()) + 1e-4
        for j, r in enumerate(rows[i]):
            if r < 0:
                assert got[i, j] == -np.inf
                continue
            ref = (q[i].astype(np.float64) @ rec[starts[r] : starts[r + 1]].T).max(1).sum()
            assert abs(got[i, j] - ref) <= bound, (i, j, got[i, j], ref, bound)
    with pytest.raises(DimensionMismatchError, match="approximate codes"):
        pq_scores(st, codec.approx_tables(q.vectors), q.offsets, rows, starts, cids, ac[:, :2])


def test_quantized_tables_round_within_half_a_step() -> None:
    rng = np.random.default_rng(0)
    lut = rng.standard_normal((6, 256, 5)).astype(np.float32)
    q, bias, scale = quantize_tables(lut, 8)
    assert q.shape == (6, 256, 8) and not q[:, :, 5:].any() and not scale[5:].any()
    codes = rng.integers(0, 256, size=(50, 6))
    exact = lut[np.arange(6), codes].sum(axis=1)  # (50, 5)
    approx = bias[:5] + scale[:5] * q[np.arange(6), codes].astype(np.float64).sum(axis=1)[:, :5]
    assert (np.abs(approx - exact) <= 6 * scale[:5] / 2 + 1e-5).all()


def test_codes_rank_closer_to_exact_maxsim_than_centroids() -> None:
    """Against exact MaxSim over the original tokens, the refined scores correlate better
    than centroid ids alone (what the approximate cut relies on)."""
    x = _tokens(3000, seed=9)
    codec = TokenCodec.train(x, dtype="res8", num_centroids=32, approx_pq=8)
    rng = np.random.default_rng(5)
    lens = rng.integers(2, 10, size=200)
    tok = x[: int(lens.sum())]
    cids, _ = codec.encode(tok)
    ac = codec.encode_approx(tok, cids)
    starts = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    q = MultiVectors.from_arrays([tok[rng.integers(0, len(tok), 5)] + 0.05 * rng.standard_normal(
        (5, 32)).astype(np.float32) for _ in range(10)])
    rows = np.tile(np.arange(200), (10, 1))
    st = query_centroid_similarities(q.vectors, codec.centroids)
    cent = centroid_scores(st, q.offsets, rows, starts, cids)
    refined = pq_scores(st, codec.approx_tables(q.vectors), q.offsets, rows, starts, cids, ac)
    exact = np.array([[(q[i] @ tok[starts[r] : starts[r + 1]].T).max(1).sum() for r in range(200)]
                      for i in range(10)])
    assert np.abs(refined - exact).mean() < 0.5 * np.abs(cent - exact).mean()


def test_codec_file_round_trip_and_damage(tmp_path: Path) -> None:
    x = _tokens(1800)
    codec = TokenCodec.train(x, dtype="res8", num_centroids=16, approx_pq=8)
    codec.save(tmp_path / "c.faiss")
    again = TokenCodec.load(tmp_path / "c.faiss", "res8")
    assert again.approx_bytes == 8
    cids, codes = codec.encode(x)
    np.testing.assert_array_equal(codec.encode_approx(x, cids), again.encode_approx(x, cids))
    np.testing.assert_array_equal(codes, again.encode(x)[1])
    raw = (tmp_path / "c.faiss").read_bytes()
    for name, data in (("short.faiss", raw[:-10]), ("long.faiss", raw + b"x"),
                       ("head.faiss", raw[:15])):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CorruptIndexError, match=name):
            TokenCodec.load(tmp_path / name, "res8")
    plain = TokenCodec.train(x, dtype="res8", num_centroids=16)  # the file format before codes
    plain.save(tmp_path / "p.faiss")
    assert TokenCodec.load(tmp_path / "p.faiss", "res8").approx_bytes == 0


def test_config_resolves_to_a_divisor_and_recorded_configs_without_it_have_none() -> None:
    assert IndexConfig().approx_pq == 64
    assert IndexConfig(approx_pq=16).resolved(24).approx_pq == 12
    assert IndexConfig(approx_pq=16).resolved(128).approx_pq == 16
    with pytest.raises(ConfigError, match="approx_pq: expected an int >= 0, got -1"):
        IndexConfig(approx_pq=-1)
    recorded = IndexConfig().to_dict()
    del recorded["approx_pq"]  # a manifest written before approximate codes
    assert IndexConfig.from_dict(recorded).approx_pq == 0
    assert IndexConfig.from_dict({"table_dtype": "res4"}).approx_pq == 64  # a user's partial dict


def _recall(a: list[list[str]], b: list[list[str]]) -> float:
    return float(np.mean([len(set(x) & set(y)) / len(y) for x, y in zip(a, b, strict=True)]))


def test_index_end_to_end_build_add_compact(tmp_path: Path) -> None:
    """Codes are written per segment, loaded at open and used by the approximate cut; an
    added segment gets them from the index's codec; compaction copies them unchanged."""
    from indexing import IndexWriter, build_index
    from serving import Searcher

    docs = clustered_docs(900, seed=3, dim=32)
    rng = np.random.default_rng(1)
    picks = [docs[int(i)][1][:3] for i in rng.integers(0, 900, 25)]
    q = MultiVectors.from_arrays([p + 0.05 * rng.standard_normal(p.shape).astype(np.float32)
                                  for p in picks])
    flat = FirstStageConfig(min_rows=100_000)
    results = {}
    for m in (0, 8):
        cfg = small_config(dim=32, table_dtype="res8", codec_centroids=64, approx_pq=m,
                           first_stage=flat, default_candidates=900, default_rerank=20)
        path = tmp_path / f"pq{m}"
        build_index(path, docs[:600], None, cfg, progress=False)
        with IndexWriter(path) as w:
            w.add(docs[600:])
        man = json.loads((path / "manifest.json").read_text())
        assert [bool(s.get("has_acodes")) for s in man["segments"]] == [bool(m)] * 2
        assert all(((f"segments/{s['name']}/acodes.bin" in man["files"]) == bool(m))
                   for s in man["segments"])
        with Searcher.open(path) as s:
            assert (s._acodes is None) == (m == 0)
            exact = s.exhaustive(q, k=10)
            results[m] = _recall(s.search(q, k=10).ids, exact.ids)
            before = None if s._acodes is None else s._acodes.copy()
        if m:
            with IndexWriter(path) as w:
                w.delete([docs[5][0], docs[700][0]])
                w.compact()
            with Searcher.open(path) as s:
                keep = np.ones(len(before), bool)
                lens = np.array([len(v) for _, v in docs])
                st = np.concatenate([[0], np.cumsum(lens)])
                for r in (5, 700):
                    keep[st[r] : st[r + 1]] = False
                np.testing.assert_array_equal(s._acodes, before[keep])
                assert _recall(s.search(q, k=10).ids, s.exhaustive(q, k=10).ids) >= results[m] - 0.05
    # rerank 20 of 900: the codes keep most of the exact top-10, centroid ids alone do not
    assert results[8] >= 0.8 and results[8] > 2 * results[0], results


def test_ssd_search_starts_reads_before_the_first_stage_and_matches_memory(tmp_path: Path) -> None:
    """SSD mode with centroid lists reads the lists' best candidates while the first stage
    runs; the candidates and results are exactly those of memory mode's plain order."""
    from indexing import build_index
    from serving import Searcher
    from serving._overlap import overlapped_candidates

    docs = clustered_docs(1500, seed=6, dim=32)
    rng = np.random.default_rng(4)
    picks = [docs[int(i)][1][:4] for i in rng.integers(0, 1500, 12)]
    q = MultiVectors.from_arrays([p + 0.05 * rng.standard_normal(p.shape).astype(np.float32)
                                  for p in picks])
    cfg = small_config(dim=32, table_dtype="res8", codec_centroids=64, approx_pq=8,
                       first_stage=FirstStageConfig(min_rows=1000), default_candidates=100,
                       default_rerank=15, centroid_candidates=200, centroid_nprobe=4)
    build_index(tmp_path, docs, None, cfg, progress=False)
    with Searcher.open(tmp_path, mode="memory") as mem, Searcher.open(tmp_path, mode="ssd") as ssd:
        assert not mem._overlap_reads(100, 15) and ssd._overlap_reads(100, 15)
        ssd.store.reset_stats()
        a, b = mem.search(q, k=10), ssd.search(q, k=10)
        assert a.ids == b.ids
        for x, y in zip(a.scores, b.scores, strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-6)
        assert ssd.store.stats()["rows_prefetched"] > 0
        # the same cut as the plain order computes
        plain = ssd._approx(q, ssd._first_stage(ssd._query_fdes(q), 100)[1], 15)
        over, _ = overlapped_candidates(ssd, q, ssd._query_fdes(q), 100, 15, {})
        for x, y in zip(plain, over, strict=True):
            assert set(x[x >= 0].tolist()) == set(y[y >= 0].tolist())
