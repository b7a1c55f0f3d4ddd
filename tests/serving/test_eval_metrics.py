"""Evaluation building blocks: judged metrics (trec_eval via pytrec-eval-terrier) against
hand computation and textbook definitions, candidate
recall vs a brute-force count, TREC run files and the results cache."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from mvr import SearchResults
from mvr.errors import ConfigError, DatasetError
from serving.evaluation import (
    candidate_recall,
    candidates_needed,
    judged_metrics,
    overlap_at_k,
    read_trec_run,
    write_trec_run,
)
from serving.evaluation._recall import candidate_positions, recall_by_n
from serving.evaluation._runs import load_results, save_results


# ---------------------------------------------------------------------- judged metrics
def test_metrics_match_hand_computation() -> None:
    qrels = {"q1": {"d1": 2, "d3": 1}, "q2": {"d5": 1}, "q3": {"d9": 1}}
    q2_ranking = [f"x{i}" for i in range(11)] + ["d5"]  # the relevant doc at rank 12
    qids = ["q1", "q2"]  # q3 is judged but has no results: it scores 0 everywhere
    got = judged_metrics(qrels, qids, [["d3", "d2", "d1"], q2_ranking])

    # q1: d3 (gain 1) at rank 1, d1 (gain 2) at rank 3; linear gains as trec_eval/BEIR.
    dcg = 1 / math.log2(2) + 2 / math.log2(4)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    ap_q1 = (1 / 1 + 2 / 3) / 2
    ap_q2 = 1 / 12
    expected = {
        "ndcg@10": (dcg / idcg + 0 + 0) / 3,
        "recall@10": (1 + 0 + 0) / 3,
        "recall@100": (1 + 1 + 0) / 3,
        "mrr@10": (1 / 1 + 0 + 0) / 3,
        "map@100": (ap_q1 + ap_q2 + 0) / 3,
    }
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-9), name


def test_metrics_follow_the_given_order_and_validate() -> None:
    qrels = {"q": {"a": 1}}
    assert judged_metrics(qrels, ["q"], [["a", "b"]], ["mrr@10"]) == {"mrr@10": 1.0}
    assert judged_metrics(qrels, ["q"], [["b", "a"]], ["mrr@10"]) == {"mrr@10": 0.5}
    assert judged_metrics(qrels, ["q"], [[]], ["ndcg@10"]) == {"ndcg@10": 0.0}
    with pytest.raises(DatasetError, match="have no judgments"):
        judged_metrics(qrels, ["zz"], [["a"]])
    with pytest.raises(ConfigError, match="duplicates"):
        judged_metrics(qrels, ["q"], [["a", "a"]])
    with pytest.raises(ConfigError, match="expected one of ndcg@k"):
        judged_metrics(qrels, ["q"], [["a"]], ["ndcg10"])


def _reference_metrics(judged: dict[str, int], ranking: list[str]) -> dict[str, float]:
    """Obviously-correct textbook definitions (linear gains, binary relevance grade >= 1)."""
    rel = {d for d, g in judged.items() if g >= 1}
    dcg = sum(judged.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranking[:10]))
    ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    hits = [i for i, d in enumerate(ranking[:100]) if d in rel]
    return {
        "ndcg@10": dcg / idcg if idcg else 0.0,
        "recall@10": sum(1 for d in ranking[:10] if d in rel) / len(rel) if rel else 0.0,
        "recall@100": len(hits) / len(rel) if rel else 0.0,
        "mrr@10": next((1 / (i + 1) for i in hits if i < 10), 0.0),
        "map@100": sum((j + 1) / (i + 1) for j, i in enumerate(hits)) / len(rel) if rel else 0.0,
    }


def test_metrics_match_textbook_definitions_on_random_runs() -> None:
    rng = np.random.default_rng(3)
    docs = [f"d{i}" for i in range(150)]
    qrels, qids, rankings = {}, [], []
    for q in range(30):
        chosen = rng.choice(150, size=rng.integers(1, 12), replace=False)
        qrels[f"q{q}"] = {docs[i]: int(rng.integers(1, 4)) for i in chosen}
        if q % 5:  # every fifth judged query gets no results at all
            qids.append(f"q{q}")
            rankings.append([docs[i] for i in rng.permutation(150)[: rng.integers(0, 120)]])
    got = judged_metrics(qrels, qids, rankings)
    ranking_of = dict(zip(qids, rankings, strict=True))
    for name, value in got.items():
        per_query = [_reference_metrics(j, ranking_of.get(q, []))[name] for q, j in qrels.items()]
        assert value == pytest.approx(float(np.mean(per_query)), abs=1e-9), name


# ---------------------------------------------------------------------- candidate recall
def _brute_recall(cands: list[list[str]], refs: list[list[str]], k: int, n: int) -> float:
    values = []
    for c, r in zip(cands, refs, strict=True):
        top = r[:k]
        if top:
            values.append(sum(1 for d in top if d in c[:n]) / len(top))
    return float(np.mean(values))


def test_candidate_recall_matches_brute_force() -> None:
    rng = np.random.default_rng(7)
    universe = [f"d{i}" for i in range(300)]
    cands, refs = [], []
    for q in range(40):
        perm = rng.permutation(len(universe))
        ref = [universe[i] for i in perm[: 100 if q % 7 else 5]]  # some short references
        # candidates: a noisy version of the reference order, plus unrelated documents
        noisy = np.argsort(np.arange(300) + rng.normal(0, 40, 300))
        cands.append([universe[perm[i]] for i in noisy[: rng.integers(50, 250)]])
        refs.append(ref)
    ks, ns = [1, 10, 100], [1, 2, 5, 10, 20, 50, 100, 200, 250]
    got = candidate_recall(cands, refs, ks, ns)
    for i, k in enumerate(ks):
        for j, n in enumerate(ns):
            assert got[i, j] == pytest.approx(_brute_recall(cands, refs, k, n), abs=1e-12)
        curve = recall_by_n(*candidate_positions(cands, refs, k), 250)
        brute_curve = np.array([_brute_recall(cands, refs, k, n) for n in range(1, 251)])
        np.testing.assert_allclose(curve, brute_curve, atol=1e-12)
        needed = candidates_needed(curve, [0.5, 0.8, 0.9, 0.99, 1.0])
        for target, n_needed in needed.items():
            reached = [n for n in range(1, 251) if brute_curve[n - 1] >= target - 1e-12]
            assert n_needed == (reached[0] if reached else None)
    assert np.all(np.diff(got, axis=1) >= 0)  # monotone in N


def test_overlap_and_edge_cases() -> None:
    assert overlap_at_k([["a", "b", "c"]], [["c", "a", "z"]], 3) == pytest.approx(2 / 3)
    assert overlap_at_k([["a"]], [[]], 10) == 0.0
    positions, k_eff = candidate_positions([["a", "a", "b"]], [["b"]], 10)
    assert k_eff.tolist() == [1] and positions[0, 0] == 2
    with pytest.raises(ConfigError, match="one list per query"):
        candidate_recall([["a"]], [["a"], ["b"]], [1], [1])
    with pytest.raises(ConfigError, match="positive candidate counts"):
        candidate_recall([["a"]], [["a"]], [1], [0])


# ---------------------------------------------------------------------- run files, cache
def test_trec_run_round_trip_and_cache(tmp_path: Path) -> None:
    results = SearchResults(
        ids=[["d2", "d1"], [], ["x"]],
        scores=[
            np.array([2.5, 1.0], np.float32),
            np.zeros(0, np.float32),
            np.array([0.3], np.float32),
        ],
    )
    path = write_trec_run(tmp_path / "run.trec", ["q1", "q2", "q3"], results, "mvr")
    lines = path.read_text().splitlines()
    assert lines[0] == "q1 Q0 d2 1 2.500000 mvr" and len(lines) == 3
    assert read_trec_run(path) == {
        "q1": [("d2", 2.5), ("d1", 1.0)],
        "q3": [("x", pytest.approx(0.3))],
    }
    save_results(tmp_path / "c.npz", ["q1", "q2", "q3"], results)
    qids, back = load_results(tmp_path / "c.npz")
    assert qids == ["q1", "q2", "q3"] and back.ids == results.ids
    for a, b in zip(back.scores, results.scores, strict=True):
        np.testing.assert_array_equal(a, b)
    bad = tmp_path / "bad.trec"
    bad.write_text("q1 Q0 d1 1 0.5 tag\nq1 Q0 d2 2\n")
    with pytest.raises(DatasetError, match=r"bad\.trec:2: expected 'qid Q0 doc rank score tag'"):
        read_trec_run(bad)
