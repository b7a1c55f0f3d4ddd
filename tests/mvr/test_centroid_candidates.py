"""Candidates from centroid inverted lists (mvr._approx.centroid_lists /
centroid_candidates / union_rows) against straightforward per-row references, and
end to end: an index whose first stage misses a document still finds it."""

from __future__ import annotations

import numpy as np
import pytest

from mvr._approx import centroid_candidates, centroid_lists, union_rows


def _random_index(n_rows: int = 300, k: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 12, n_rows)
    starts = np.zeros(n_rows + 1, np.int64)
    np.cumsum(lengths, out=starts[1:])
    cids = rng.integers(0, k, int(starts[-1])).astype(np.uint16)
    return cids, starts, k


def test_lists_hold_each_row_once_per_centroid() -> None:
    cids, starts, k = _random_index()
    offsets, rows = centroid_lists(cids, starts, k)
    assert offsets.shape == (k + 1,) and offsets[0] == 0 and offsets[-1] == len(rows)
    for c in range(k):
        want = sorted({r for r in range(len(starts) - 1) if c in cids[starts[r]:starts[r + 1]]})
        assert rows[offsets[c]:offsets[c + 1]].tolist() == want


def _reference(st, lo, hi, cids, starts, nprobe, allowed):
    """Per row, per query token: the best probed centroid among its tokens, else the
    (nprobe+1)-th similarity; rows touching no probed list are not candidates."""
    n_rows = len(starts) - 1
    score = np.zeros(n_rows)
    touched = np.zeros(n_rows, bool)
    for a in range(lo, hi):
        order = np.argsort(-st[:, a], kind="stable")
        probed, floor = set(order[:nprobe].tolist()), st[order[nprobe], a]
        for r in range(n_rows):
            hits = [st[c, a] for c in cids[starts[r]:starts[r + 1]].tolist() if c in probed]
            if hits and (allowed is None or allowed[r]):
                touched[r] = True
                score[r] += max(hits) - floor
    return score, touched


@pytest.mark.parametrize("nprobe", [1, 3, 8])
@pytest.mark.parametrize("masked", [False, True])
def test_candidates_match_the_reference(nprobe: int, masked: bool) -> None:
    cids, starts, k = _random_index(seed=nprobe)
    rng = np.random.default_rng(1)
    qo = np.array([0, 3, 4, 9])
    st = rng.standard_normal((k, qo[-1])).astype(np.float32)
    allowed = rng.random(len(starts) - 1) < 0.5 if masked else None
    offsets, rows = centroid_lists(cids, starts, k)
    n = 25
    got = centroid_candidates(st, qo, offsets, rows, len(starts) - 1, n, nprobe, allowed)
    assert got.shape == (3, n)
    for i in range(3):
        score, touched = _reference(st, qo[i], qo[i + 1], cids, starts, nprobe, allowed)
        cand = got[i][got[i] >= 0]
        assert len(set(cand.tolist())) == len(cand)
        assert len(cand) == min(n, touched.sum())
        assert touched[cand].all()
        np.testing.assert_allclose(score[cand], np.sort(score[cand])[::-1], rtol=1e-5, atol=1e-5)
        # nothing left out scores above the last one taken
        rest = np.setdiff1d(np.flatnonzero(touched), cand)
        if len(rest) and len(cand) == n:
            assert score[rest].max() <= score[cand].min() + 1e-5


def test_union_keeps_order_and_drops_repeats_and_pads() -> None:
    a = np.array([[3, 1, -1], [5, -1, -1]])
    b = np.array([[1, 7, 3, 9], [-1, -1, -1, -1]])
    got = union_rows(a, b)
    assert got.tolist() == [[3, 1, 7, 9], [5, -1, -1, -1]]



def test_search_reaches_documents_the_first_stage_left_out(tmp_path) -> None:
    """A first stage cut to k candidates, with every centroid probed: the lists add
    every live document, so the exact re-rank returns brute force's top-k. Deleted
    rows never come back."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "fixtures"))
    from index_testlib import assert_topk_matches, brute_maxsim, clustered_docs, queries_like, small_config

    from indexing import IndexWriter, build_index
    from serving import Searcher

    docs = clustered_docs(400, seed=5)
    q = queries_like(docs, 12, seed=6)
    cfg = small_config(codec_centroids=16, centroid_candidates=400, centroid_nprobe=16)
    build_index(tmp_path, docs, None, cfg, progress=False)
    gone = {f"doc-{i}" for i in range(0, 400, 7)}
    with IndexWriter(tmp_path) as w:
        w.delete(sorted(gone))
    live = [(d, v) for d, v in docs if d not in gone]
    ref = brute_maxsim(q, [v for _, v in live])
    ref_ids = [d for d, _ in live]
    with Searcher.open(tmp_path) as s:
        assert s._lists is not None
        res = s.search(q, k=10, candidates=10, rerank_candidates=100_000)
        for i in range(len(q)):
            assert not gone & set(res.ids[i])
            assert_topk_matches(res.ids[i], res.scores[i], ref[i], ref_ids, 10)


def test_filtered_search_with_lists_returns_the_top_k_within_the_filter(tmp_path) -> None:
    """Lists on, a filter keeping about half the documents (the first-stage path):
    every result satisfies it and, with every centroid probed, the results are brute
    force's top-k among the allowed documents."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "fixtures"))
    from index_testlib import assert_topk_matches, brute_maxsim, clustered_docs, queries_like, small_config

    from indexing import build_index
    from serving import Searcher

    docs = clustered_docs(400, seed=8)
    q = queries_like(docs, 8, seed=9)
    cfg = small_config(codec_centroids=16, centroid_candidates=400, centroid_nprobe=16,
                       default_candidates=20)
    build_index(tmp_path, docs, None, cfg, progress=False)
    keep = [d for i, (d, _) in enumerate(docs) if i % 2 == 0]
    ref = brute_maxsim(q, [v for i, (_, v) in enumerate(docs) if i % 2 == 0])
    with Searcher.open(tmp_path) as s:
        res = s.search(q, k=10, rerank_candidates=100_000, filter={"ids": keep})
        for i in range(len(q)):
            assert set(res.ids[i]) <= set(keep)
            assert_topk_matches(res.ids[i], res.scores[i], ref[i], keep, 10)
