"""Hybrid retrieval: the fusions against hand-computed examples, BM25 against bm25s run
directly, and the hybrid search pipeline against an independent brute-force fusion."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from index_testlib import brute_maxsim, clustered_docs, queries_like, small_config  # noqa: E402

import indexing  # noqa: E402
from mvr.errors import ConfigError, InvalidInputError  # noqa: E402
from serving import Searcher  # noqa: E402
from serving._bm25 import index_bm25  # noqa: E402
from serving._hybrid import HybridConfig, fuse, parse_hybrid, rrf_scores, weighted_scores  # noqa: E402

NAN = np.nan
ROWS = np.array([10, 20, 30, 40])
LATE = np.array([3.0, 2.0, NAN, 1.0])   # MaxSim list: 10, 20, 40
BM25 = np.array([NAN, 5.0, 4.0, 1.0])   # BM25 list: 20, 30, 40


def test_rrf_by_hand():
    # late ranks 10:1 20:2 40:3; bm25 ranks 20:1 30:2 40:3; k = 60
    want = [1 / 61, 1 / 62 + 1 / 61, 1 / 62, 1 / 63 + 1 / 63]
    np.testing.assert_allclose(rrf_scores(LATE, BM25, 60), want, rtol=1e-12)
    rows, scores = fuse(ROWS, LATE, BM25, HybridConfig(fusion="rrf", rrf_k=60), k=4)
    assert rows.tolist() == [20, 40, 10, 30]
    np.testing.assert_allclose(scores, [want[1], want[3], want[0], want[2]])


def test_weighted_by_hand():
    # min-max: late 10:1 20:0.5 40:0; bm25 20:1 30:0.75 40:0; absent = 0
    np.testing.assert_allclose(weighted_scores(LATE, BM25, 0.7), [0.7, 0.65, 0.225, 0.0])
    rows, _ = fuse(ROWS, LATE, BM25, HybridConfig(fusion="weighted", weight=0.7), k=3)
    assert rows.tolist() == [10, 20, 30]
    rows, scores = fuse(ROWS, LATE, BM25, HybridConfig(fusion="weighted", weight=0.5), k=4)
    assert rows.tolist() == [20, 10, 30, 40]
    np.testing.assert_allclose(scores, [0.75, 0.5, 0.375, 0.0])


def test_constant_scores_normalise_to_one_and_ties_go_to_maxsim():
    np.testing.assert_allclose(weighted_scores(np.array([2.0, 2.0]), np.array([NAN, NAN]), 0.5), [0.5, 0.5])
    rows, _ = fuse(np.array([1, 2]), np.array([NAN, 0.5]), np.array([7.0, NAN]),
                   HybridConfig(fusion="rrf", rrf_k=0), k=2)
    assert rows.tolist() == [2, 1]  # both 1/1; row 2 has the better MaxSim


@pytest.mark.parametrize("value, message", [
    ("max", "hybrid.fusion: expected one of ('rrf', 'weighted'), got 'max'"),
    ({"weight": 1.5}, "hybrid.weight: expected a number in [0, 1], got 1.5"),
    ({"depth": 0}, "hybrid.depth: expected an int >= 1, got 0"),
    ({"deep": 3}, "hybrid: unknown keys ['deep']"),
    (3, "hybrid: expected True, 'rrf', 'weighted', a dict or a HybridConfig, got 3"),
])
def test_bad_hybrid_options(value, message):
    with pytest.raises(ConfigError) as e:
        parse_hybrid(value)
    assert message in str(e.value)


# ---------------------------------------------------------------------- end to end
WORDS = ["protein", "proteins", "cell", "cells", "vitamin", "fracture", "bone", "the", "of",
         "running", "runs", "cancer", "gene", "genes", "virus"]
N = 120


class _Encoder:
    """Query texts -> fixed token vectors (the hybrid needs texts; MaxSim needs vectors)."""

    dim = 16
    identity = None

    def __init__(self, docs):
        self.docs = docs

    def encode_queries(self, texts):
        return queries_like(self.docs, len(texts), seed=len(texts[0]))


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    import dataclasses

    from mvr import IndexConfig

    rng = np.random.default_rng(5)
    docs = clustered_docs(N, seed=8)
    texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(3, 12)))) for _ in range(N)]
    items = [{"id": d, "text": t, "vectors": v, "metadata": {"half": i % 2}}
             for i, ((d, v), t) in enumerate(zip(docs, texts, strict=True))]
    root = tmp_path_factory.mktemp("hybrid") / "idx"
    extra = {"approx": False} if "approx" in {f.name for f in dataclasses.fields(IndexConfig)} else {}
    indexing.build_index(root, items, None, small_config(table_dtype="float16", **extra),
                         progress=False)
    s = Searcher.open(root, encoder=None)
    s._encoder = _Encoder(docs)
    yield {"searcher": s, "docs": docs, "texts": texts, "root": root}
    s.close()


def _bm25s_direct(texts, query):
    import bm25s
    import Stemmer

    stem = Stemmer.Stemmer("english")
    r = bm25s.BM25()
    r.index(bm25s.tokenize(texts, stopwords="en", stemmer=stem, show_progress=False), show_progress=False)
    q = bm25s.tokenize([query], stopwords="en", stemmer=stem, return_ids=False, show_progress=False)[0]
    q = [t for t in q if t in r.vocab_dict]
    return r.get_scores(q) if q else np.zeros(len(texts))


def test_segment_bm25_equals_bm25s_run_directly(index):
    for query in ["proteins of the cell", "bone fracture vitamin", "zebra"]:
        got = index_bm25(index["searcher"]).scores(query)
        np.testing.assert_allclose(got, _bm25s_direct(index["texts"], query), rtol=1e-5, atol=1e-6)


def _ranks(scores):
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return {i: r + 1 for r, i in enumerate(order)}


@pytest.mark.parametrize("fusion", ["rrf", "weighted"])
def test_hybrid_search_equals_brute_force_fusion(index, fusion):
    s = index["searcher"]
    query = "cell proteins and genes"
    q = s.encoder.encode_queries([query])
    keep = [i for i in range(N) if i % 2 == 1]  # filter: half == 1
    late = brute_maxsim(q, [index["docs"][i][1].astype(np.float16).astype(np.float32) for i in keep])[0]
    bm = _bm25s_direct(index["texts"], query)[keep]
    if fusion == "rrf":
        rl, rb = _ranks(late), _ranks(bm)
        fused = [1 / (60 + rl[j]) + 1 / (60 + rb[j]) for j in range(len(keep))]
    else:
        def mm(x):
            return (x - x.min()) / (x.max() - x.min())
        fused = list(0.7 * mm(late) + 0.3 * mm(bm))
    want = sorted(range(len(keep)), key=lambda j: (-fused[j], -late[j]))[:10]
    res = s.search([query], k=10, candidates=N, filter={"field": "half", "eq": 1},
                   hybrid={"fusion": fusion, "depth": N, "weight": 0.7})
    assert res.ids[0] == [f"doc-{keep[j]}" for j in want]
    np.testing.assert_allclose(res.scores[0], [fused[j] for j in want], rtol=1e-4)


def test_hybrid_rescoring_fills_bm25_only_candidates(index):
    s = index["searcher"]
    res = s.search(["vitamin bone"], k=20, candidates=20, hybrid={"depth": 10})
    assert len(res.ids[0]) == 20 and len(set(res.ids[0])) == 20
    assert "rescore" in res.timings and "bm25" in res.timings


def test_hybrid_needs_texts_and_bm25(index, tmp_path):
    s = index["searcher"]
    with pytest.raises(InvalidInputError, match="hybrid search needs query texts"):
        s.search(queries_like(index["docs"], 1), k=3, hybrid=True)
    docs = clustered_docs(10, seed=1)
    indexing.build_index(tmp_path / "novec", docs, None, small_config(), progress=False)
    with Searcher.open(tmp_path / "novec") as s2:
        s2._encoder = _Encoder(docs)
        with pytest.raises(ConfigError, match="segment seg-000001 of .* has none .no stored texts"):
            s2.search(["cell"], k=3, hybrid=True)


def test_parse_fusions():
    from serving.evaluation._hybrid_eval import parse_fusions

    assert parse_fusions("rrf, weighted:0.5,rrf:k=20:norescore") == [
        {"fusion": "rrf"}, {"fusion": "weighted", "weight": 0.5},
        {"fusion": "rrf", "rrf_k": 20.0, "rescore": False}]
    with pytest.raises(ConfigError, match="hybrid.fusion: expected one of"):
        parse_fusions("max")
    with pytest.raises(ConfigError, match="--hybrid: expected fusion"):
        parse_fusions("rrf:x")


def test_evaluate_hybrid_runs_every_ranking(index):
    from types import SimpleNamespace

    from serving.evaluation._hybrid_eval import evaluate_hybrid, format_hybrid

    texts = index["texts"]
    ds = SimpleNamespace(queries={"q1": "cell protein", "q2": "bone fracture"},
                         qrels={"q1": {"doc-1": 1, "doc-2": 2}, "q2": {"doc-5": 1}})
    rep = evaluate_hybrid(index["searcher"], ds, fusions=[{"fusion": "rrf"}, {"fusion": "weighted", "weight": 0.3}],
                          depth=20, candidates=N, exhaustive=True)
    assert list(rep["runs"]) == ["bm25 (bm25s)", "mvr", "exhaustive MaxSim", "fused rrf", "fused weighted w=0.3"]
    assert rep["runs"]["mvr"]["ndcg@10"] == pytest.approx(rep["runs"]["exhaustive MaxSim"]["ndcg@10"])
    assert "| fused rrf |" in format_hybrid(rep) and texts
