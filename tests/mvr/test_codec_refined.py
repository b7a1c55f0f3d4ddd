"""The refined tables (``pqr2`` / ``pqr4``): a residual code taken after the approximate code.

Each part is checked against a straightforward reference: the nearest centroid by brute
force, faiss's own PQ decoding, the nearest level per dimension by argmin, bits unpacked
one by one, and exact MaxSim over the decoded vectors for search.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "fixtures"))
from index_testlib import (  # noqa: E402
    assert_topk_matches,
    brute_maxsim,
    clustered_docs,
    clustered_tokens,
    small_config,
)

from indexing import build_index  # noqa: E402
from mvr import MultiVectors  # noqa: E402
from mvr._codec import CODEC_BITS, TokenCodec, _fit_levels, residual_code_size  # noqa: E402
from mvr.errors import ConfigError, CorruptIndexError  # noqa: E402
from serving import Searcher  # noqa: E402


def _tokens(n: int = 4000) -> np.ndarray:
    return clustered_tokens(n, 32)


def _reference_decode(codec: TokenCodec, cids: np.ndarray, codes: np.ndarray,
                      acodes: np.ndarray) -> np.ndarray:
    """centroid + faiss's PQ decoding + the level each unpacked code names."""
    bits = CODEC_BITS[codec.dtype]
    assert codec.levels is not None
    out = codec.centroids[cids.astype(np.int64)] + codec.approx.sa_decode(acodes)
    for t in range(len(cids)):
        for d in range(codec.dim):
            byte = int(codes[t, d * bits // 8])
            level = (byte >> (bits * (d % (8 // bits)))) & ((1 << bits) - 1)
            out[t, d] += codec.levels[d, level]
    return out


@pytest.mark.parametrize("dtype", ["pqr2", "pqr4"])
def test_codes_are_nearest_and_decode_matches_a_reference(dtype: str) -> None:
    x = _tokens()
    codec = TokenCodec.train(x, dtype=dtype, num_centroids=64, approx_pq=8)
    cids, codes, acodes = codec.encode_full(x)
    bits = CODEC_BITS[dtype]
    assert codes.shape == (len(x), residual_code_size(32, dtype)) == (len(x), 32 * bits // 8)
    d2 = ((x[:, None, :] - codec.centroids[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(cids, d2.argmin(1))
    resid = x - codec.centroids[cids.astype(np.int64)]
    np.testing.assert_array_equal(acodes, codec.approx.sa_encode(resid))
    np.testing.assert_array_equal(acodes, codec.encode_approx(x, cids))
    # every dimension's code names the level nearest what the PQ leaves
    rest = resid - codec.approx.sa_decode(acodes)
    back = codec.decode(cids, codes, acodes)
    ref = _reference_decode(codec, cids[:300], codes[:300], acodes[:300])
    np.testing.assert_allclose(back[:300], ref, rtol=0, atol=1e-6)
    assert codec.levels is not None
    nearest = np.abs(rest[:, :, None] - codec.levels[None]).min(-1)
    np.testing.assert_allclose(np.abs(back - x), nearest, rtol=0, atol=1e-5)
    # the record refines the approximate code: it only ever gets closer
    approx_only = codec.centroids[cids.astype(np.int64)] + codec.approx.sa_decode(acodes)
    assert ((back - x) ** 2).sum() < 0.5 * ((approx_only - x) ** 2).sum()


def test_more_bits_are_closer_and_levels_are_lloyd_fixed_points() -> None:
    x = _tokens()
    errs = {}
    for dtype in ("pqr2", "pqr4"):
        codec = TokenCodec.train(x, dtype=dtype, num_centroids=64, approx_pq=8)
        c, k, a = codec.encode_full(x)
        errs[dtype] = float(((codec.decode(c, k, a) - x) ** 2).sum())
    assert errs["pqr4"] < errs["pqr2"]
    rng = np.random.default_rng(1)
    v = rng.standard_normal((20_000, 3)) * np.array([1.0, 0.1, 3.0])
    lv = _fit_levels(v, 2, iters=60)
    assert np.all(np.diff(lv, axis=1) > 0)
    for d in range(3):  # each level is the mean of the values nearest it
        cell = np.abs(v[:, d, None] - lv[d][None]).argmin(1)
        means = [v[cell == j, d].mean() for j in range(4)]
        np.testing.assert_allclose(lv[d], means, rtol=0, atol=2e-3 * v[:, d].std())
    # a Gaussian's 4-level Lloyd-Max quantiser: +-0.4528, +-1.510 (in standard deviations)
    np.testing.assert_allclose(lv[0], [-1.510, -0.4528, 0.4528, 1.510], atol=0.04)


def test_save_load_and_damage(tmp_path: Path) -> None:
    x = _tokens(1200)
    codec = TokenCodec.train(x, dtype="pqr2", num_centroids=16, approx_pq=8)
    codec.save(tmp_path / "c.faiss")
    again = TokenCodec.load(tmp_path / "c.faiss", "pqr2")
    a, b = codec.encode_full(x), again.encode_full(x)
    for u, w in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, w)
    np.testing.assert_array_equal(codec.decode(*a), again.decode(*b))
    with pytest.raises(CorruptIndexError, match="a res4 table expects a plain codec file"):
        TokenCodec.load(tmp_path / "c.faiss", "res4")
    plain = TokenCodec.train(x, dtype="res4", num_centroids=16, approx_pq=8)
    plain.save(tmp_path / "p.faiss")
    with pytest.raises(CorruptIndexError, match="a pqr2 table expects a refined codec file"):
        TokenCodec.load(tmp_path / "p.faiss", "pqr2")
    with pytest.raises(CorruptIndexError, match=r"c.faiss: expected 2048 bytes of pqr4 levels, got 512$"):
        TokenCodec.load(tmp_path / "c.faiss", "pqr4")  # 2-bit levels read as 4-bit
    raw = (tmp_path / "c.faiss").read_bytes()
    (tmp_path / "bad.faiss").write_bytes(raw[:-10])
    with pytest.raises(CorruptIndexError, match="bad.faiss"):
        TokenCodec.load(tmp_path / "bad.faiss", "pqr2")
    nan = bytearray(raw)
    nan[-4:] = np.array([np.nan], "<f4").tobytes()
    (tmp_path / "nan.faiss").write_bytes(bytes(nan))
    with pytest.raises(CorruptIndexError, match="expected finite pqr2 levels"):
        TokenCodec.load(tmp_path / "nan.faiss", "pqr2")
    with pytest.raises(ConfigError, match="a pqr2 table decodes with the approximate codes"):
        codec.decode(a[0], a[1])
    with pytest.raises(ConfigError, match="expected approx_pq > 0, got 0"):
        TokenCodec.train(x, dtype="pqr2", num_centroids=16)
    with pytest.raises(ConfigError, match="expected approx_pq > 0, got 0"):
        small_config(table_dtype="pqr4", approx_pq=0)
    with pytest.raises(ConfigError, match="multiple of 4, got 30"):
        small_config(dim=30, table_dtype="pqr2").resolved(30)


@pytest.mark.parametrize("mode", ["memory", "mmap", "ssd"])
def test_search_scores_are_exact_maxsim_over_the_decoded_tokens(tmp_path: Path, mode: str) -> None:
    docs = clustered_docs(400, seed=3, dim=32)
    cfg = small_config(dim=32, table_dtype="pqr2", codec_centroids=32, codec_train_tokens=1500,
                       approx_pq=16, default_candidates=400)
    build_index(tmp_path, docs, None, cfg, progress=False)
    queries = MultiVectors.from_arrays([v[: 1 + i % 5] for i, (_, v) in enumerate(docs[:12])])
    with Searcher.open(tmp_path, mode=mode) as s:
        assert s.config.table_dtype == "pqr2"
        stored = s.store.get(np.arange(len(docs)))
        decoded = [np.asarray(stored[i]) for i in range(len(docs))]
        for (_, v), d in zip(docs, decoded, strict=True):
            assert ((d * v).sum(1) / np.linalg.norm(d, axis=1)).min() > 0.9
        ref = brute_maxsim(queries, decoded)
        raw = brute_maxsim(queries, [v for _, v in docs])
        got = s.search(queries, k=10)
        ids = [d for d, _ in docs]
        hits = 0
        for i in range(len(queries)):
            assert_topk_matches(got.ids[i], got.scores[i], ref[i], ids, 10, tol=1e-4)
            hits += len(set(got.ids[i]) & {ids[j] for j in np.argsort(-raw[i])[:10]})
        assert hits / (10 * len(queries)) >= 0.9, hits  # and the raw vectors' top-10 is kept


def test_add_delete_compact_copy_the_codes(tmp_path: Path) -> None:
    """Compaction copies a refined table's codes and approximate codes as stored: the
    survivors decode to the same vectors, and search stays exact over them."""
    from indexing import IndexWriter

    docs = clustered_docs(200, seed=5, dim=32)
    cfg = small_config(dim=32, table_dtype="pqr2", codec_centroids=32, codec_train_tokens=1500,
                       approx_pq=16)
    build_index(tmp_path, docs[:150], None, cfg, progress=False)
    with IndexWriter(tmp_path) as w:
        w.add(docs[150:])
        w.delete([d for d, _ in docs[::7]])

        def decoded() -> dict[str, np.ndarray]:
            with Searcher.open(tmp_path) as s:
                live = [i for i in range(len(s.ids)) if s.ids[i] not in gone]
                got = s.store.get(np.asarray(live))
                return {s.ids[r]: np.asarray(got[j]) for j, r in enumerate(live)}

        gone = {d for d, _ in docs[::7]}
        before = decoded()
        w.compact()
        after = decoded()
    assert sorted(before) == sorted(after) and len(after) == 200 - len(gone)
    for d in before:
        np.testing.assert_array_equal(before[d], after[d])
    ids = sorted(after)
    q = MultiVectors.from_arrays([dict(docs)[d][:3] for d in ids[:6]])
    ref = brute_maxsim(q, [after[d] for d in ids])
    with Searcher.open(tmp_path) as s:
        res = s.exhaustive(q, k=5)
        for i in range(len(q)):
            assert_topk_matches(res.ids[i], res.scores[i], ref[i], ids, 5, tol=1e-4)
