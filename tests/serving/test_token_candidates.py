"""Token-level candidates (serving._token_candidates): the 4-bit codes derived from the
8-bit approximate codes, the fast-scan token lists against brute force, the WARP
estimate against a hand-computed example and a direct reference, the shard property
of the merge, and search end to end against exhaustive MaxSim."""

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
    queries_like,
    small_config,
)

from serving._token_candidates import (  # noqa: E402
    TokenCandidates,
    aggregate_token_lists,
    derive_codebook,
    merge_token_lists,
    pack_codes,
)


def test_derived_codes_are_each_8bit_centroid_s_nearest_4bit_centroid() -> None:
    import faiss

    rng = np.random.default_rng(0)
    c8 = rng.standard_normal((4, 256, 3)).astype(np.float32)
    cents, code_map = derive_codebook(c8, seed=1)
    assert cents.shape == (4, 16, 3) and code_map.shape == (4, 256)
    for m in range(4):
        d = ((c8[m][:, None, :] - cents[m][None]) ** 2).sum(-1)
        np.testing.assert_allclose(d[np.arange(256), code_map[m]], d.min(axis=1), rtol=1e-5)
    acodes = rng.integers(0, 256, (50, 4)).astype(np.uint8)
    packed = pack_codes(acodes, code_map)
    pq = faiss.ProductQuantizer(12, 4, 4)
    faiss.copy_array_to_vector(cents.reshape(-1), pq.centroids)
    want = np.concatenate([cents[m][code_map[m][acodes[:, m]]] for m in range(4)], axis=1)
    np.testing.assert_array_equal(pq.decode(packed), want)  # faiss reads the same codes


def test_pack_codes_rejects_an_odd_number_of_sub_quantizers() -> None:
    from mvr.errors import DimensionMismatchError

    with pytest.raises(DimensionMismatchError, match="M even"):
        pack_codes(np.zeros((3, 5), np.uint8), np.zeros((5, 256), np.uint8))


def test_the_estimate_on_a_hand_computed_example() -> None:
    """Two query tokens, kprime = 3. Token 0's entries (row: score): 4: .9, 2: .8, 4: .7,
    1: .5 -> floor .7 (the 3rd), only scores above it count: row 4 +.2, row 2 +.1.
    Token 1's: 1: .6, 3: .6, 2: .4 (floor .4): rows 1 and 3 +.2. Base .7 + .4 = 1.1."""
    d = np.array([[0.9, 0.8, 0.7, 0.5], [0.6, 0.6, 0.4, -np.inf]], np.float32)
    r = np.array([[4, 2, 4, 1], [1, 3, 2, -1]], np.int64)
    rows, scores = aggregate_token_lists([(d, r)], 3, 10, 6)
    assert rows.tolist() == [1, 3, 4, 2]  # 1.3, 1.3 (ties by the lower row), 1.3, 1.2
    np.testing.assert_allclose(scores, [1.3, 1.3, 1.3, 1.2], atol=1e-6)
    rows, _ = aggregate_token_lists([(d, r)], 3, 10, 6, allowed=np.array([1, 0, 1, 0, 1, 1], bool))
    assert rows.tolist() == [4, 2]
    rows, _ = aggregate_token_lists([(d, r)], 3, 2, 6)
    assert rows.tolist() == [1, 3]


def test_splitting_the_tokens_into_parts_changes_nothing() -> None:
    """The shard property: the union of each part's own top kprime, merged, gives the
    same candidates and scores as one part holding every token, ties included."""
    rng = np.random.default_rng(3)
    n_tok, n_rows, kprime = 400, 60, 25
    row_of = np.sort(rng.integers(0, n_rows, n_tok))
    scores = np.round(rng.random((5, n_tok)), 2).astype(np.float32)  # many ties

    def top(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = scores[:, tokens]
        order = np.argsort(-s, axis=1, kind="stable")[:, :kprime]
        d = np.take_along_axis(s, order, axis=1)
        return d, row_of[tokens][order].astype(np.int64)

    whole = aggregate_token_lists([top(np.arange(n_tok))], kprime, 40, n_rows)
    low = np.flatnonzero(row_of < 30)
    high = np.flatnonzero(row_of >= 30)
    split = aggregate_token_lists([top(high), top(low)], kprime, 40, n_rows)
    np.testing.assert_array_equal(whole[0], split[0])
    np.testing.assert_allclose(whole[1], split[1], atol=1e-6)
    d, r, floors = merge_token_lists([top(low), top(high)], kprime)
    np.testing.assert_allclose(floors, -np.sort(-scores, axis=1)[:, kprime - 1])


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    from indexing import build_index

    path = tmp_path_factory.mktemp("tokens")
    docs = clustered_docs(500, seed=11)
    cfg = small_config(codec_centroids=16, token_candidates=500, token_nprobe=16,
                       token_kprime=100_000, default_candidates=10)
    build_index(path, docs, None, cfg, progress=False)
    return path, docs


def test_token_lists_score_the_probed_tokens_as_brute_force_does(built) -> None:
    """Every returned token is in one of the query token's nprobe most similar
    centroids' lists; its fast-scan score is q . (c + r4) within the 8-bit tables'
    rounding; and the returned set is brute force's top kprime up to that rounding."""
    from mvr._approx import query_centroid_similarities
    from serving import Searcher

    path, docs = built
    q = queries_like(docs, 6, seed=12)
    with Searcher.open(path) as s:
        tc = s._tokens
        assert isinstance(tc, TokenCandidates) and s._lists is None
        cents4, code_map = derive_codebook(s.codec.approx_centroids)
        m = s._acodes.shape[1]
        r4 = np.concatenate([cents4[j][code_map[j][s._acodes[:, j]]] for j in range(m)], axis=1)
        tokens = s.codec.centroids[s._cids.astype(np.int64)] + r4
        row_of = np.repeat(np.arange(len(s._tok_starts) - 1), np.diff(s._tok_starts))
        for i in range(len(q)):
            qv = q[i].astype(np.float32)
            st = query_centroid_similarities(qv, s.codec.centroids)
            nprobe, kprime = 4, 30
            dist, rows = tc.token_lists(qv, st, nprobe, kprime)
            for a in range(qv.shape[0]):
                probed = np.argsort(-st[:, a])[:nprobe]
                inside = np.flatnonzero(np.isin(s._cids, probed))
                exact = tokens[inside] @ qv[a]
                best = np.sort(exact)[::-1][:kprime]
                span = float(exact.max() - exact.min()) + 1e-6
                ok = rows[a] >= 0
                assert ok.sum() == min(kprime, inside.size)
                # each returned score is some probed token of that row's, within rounding
                for sc, r in zip(dist[a][ok], rows[a][ok], strict=True):
                    mine = exact[row_of[inside] == r]
                    assert np.abs(mine - sc).min() <= 0.05 * span, (sc, mine)
                np.testing.assert_allclose(np.sort(dist[a][ok])[::-1], best, atol=0.05 * span)


def test_search_with_token_lists_reaches_documents_the_first_stage_left_out(built) -> None:
    """The FDE's 10 candidates alone miss most of the exhaustive top 10; with the token
    lists' 500 (every list probed, every token kept) the results are exhaustive
    MaxSim's top 10, tombstones excluded."""
    from indexing import IndexWriter
    from serving import Searcher

    path, docs = built
    q = queries_like(docs, 10, seed=13)
    gone = {f"doc-{i}" for i in range(0, 500, 9)}
    with IndexWriter(path) as w:
        w.delete(sorted(gone))
    live = [(d, v) for d, v in docs if d not in gone]
    ref = brute_maxsim(q, [v for _, v in live])
    ref_ids = [d for d, _ in live]
    with Searcher.open(path) as s:
        assert s._tokens is not None
        res = s.search(q, k=10, rerank_candidates=100_000)
        for i in range(len(q)):
            assert not gone & set(res.ids[i])
            assert_topk_matches(res.ids[i], res.scores[i], ref[i], ref_ids, 10)


def test_the_token_budget_shrinks_default_depths_in_proportion() -> None:
    """candidate_tokens: PyPI-like 10-token documents keep 2,000 + 2,000; 120-token
    documents get a tenth of each; an explicit candidates= keeps its N; k is a floor."""
    from mvr import IndexConfig
    from serving._stages import search_depths

    cfg = IndexConfig(candidate_tokens=48_000, default_candidates=2000, default_rerank=50)
    assert search_depths(cfg, 10, None, None, 2000, 10.4) == (2000, 2000, 50)
    assert search_depths(cfg, 10, None, None, 2000, 120.0) == (200, 200, 50)
    assert search_depths(cfg, 10, 700, None, 2000, 120.0) == (700, 200, 50)
    assert search_depths(cfg, 300, None, None, 2000, 120.0) == (300, 200, 300)
    assert search_depths(cfg, 10, None, None, 0, 120.0) == (400, 0, 50)  # no lists
    off = IndexConfig(candidate_tokens=0, default_candidates=2000, default_rerank=50)
    assert search_depths(off, 10, None, 9999, 2000, 120.0) == (2000, 2000, 4000)


def test_the_searcher_applies_the_budget(built) -> None:
    """The searcher's depths follow search_depths over the manifest's mean tokens."""
    import dataclasses

    from serving import Searcher
    from serving._stages import search_depths

    path, _ = built
    with Searcher.open(path) as s:
        counts = s.manifest["counts"]
        mean = counts["tokens"] / counts["documents"]
        s.config = dataclasses.replace(s.config, candidate_tokens=int(40 * mean),
                                       default_candidates=100, token_candidates=100)
        want = search_depths(s.config, 10, None, None, 100, mean)
        assert want[0] == want[1] and 18 <= want[0] <= 20  # 40 x mean tokens over 200 documents
        assert s._depths(10, None, None) == (want[0], want[2])
        assert s._extra_n() == want[1]
