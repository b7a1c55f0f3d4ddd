"""Metrics against relevance judgments, computed by trec_eval (pytrec-eval-terrier).

The measures are trec_eval's own (the implementation BEIR reports with):
``ndcg@k`` = ``ndcg_cut.k`` (grade as a linear gain), ``recall@k`` = ``recall.k``,
``map@k`` = ``map_cut.k``, ``precision@k`` = ``P.k``, and ``mrr@k`` = ``recip_rank``
of the ranking cut at ``k``. A judged query without results scores 0 and counts
in every mean.

The ranking handed in is evaluated exactly as given: trec_eval orders a run by
score (ties by document id), so each result gets a strictly decreasing
rank-derived score (``len - rank``); ties in the real scores can then not
reorder the list behind our back.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from mvr.errors import ConfigError, DatasetError

__all__ = ["JUDGED_METRICS", "judged_metrics", "ranked_run"]

JUDGED_METRICS: tuple[str, ...] = ("ndcg@10", "recall@10", "recall@100", "mrr@10", "map@100")

_MEASURES = {"ndcg": "ndcg_cut", "recall": "recall", "map": "map_cut", "precision": "P"}
_NAME = re.compile(r"^(ndcg|recall|map|precision|mrr)@([1-9][0-9]*)$")


def ranked_run(
    qids: Sequence[str], ranked_ids: Sequence[Sequence[str]], depth: int | None = None
) -> dict[str, dict[str, float]]:
    """``{qid: {doc_id: score}}`` with scores ``len - rank`` (strictly decreasing).

    Parameters
    ----------
    qids : sequence of str
        Shape: (n_queries,).
    ranked_ids : sequence of sequence of str
        Shape: (n_queries, <= k); best first. Duplicates within a list are refused.
    depth : int, optional
        Keep only the first ``depth`` results of each list.
    """
    if len(qids) != len(ranked_ids):
        raise ConfigError(
            f"ranked_ids: expected one list per query ({len(qids)}), got {len(ranked_ids)}"
        )
    run: dict[str, dict[str, float]] = {}
    for qid, ids in zip(qids, ranked_ids, strict=True):
        ids = list(ids)
        n = len(ids)
        ranking = {str(doc): float(n - rank) for rank, doc in enumerate(ids)}
        if len(ranking) != n:
            raise ConfigError(f"query {qid!r}: expected distinct document ids, got duplicates")
        if depth is not None:
            ranking = {str(doc): float(n - rank) for rank, doc in enumerate(ids[:depth])}
        run[str(qid)] = ranking
    return run


def _parse(metric: str) -> tuple[str, int]:
    m = _NAME.match(metric)
    if m is None:
        raise ConfigError(
            f"metric: expected one of ndcg@k, recall@k, map@k, precision@k, mrr@k, got {metric!r}"
        )
    return m.group(1), int(m.group(2))


def _mean(per_query: dict[str, dict[str, float]], key: str, qids: Sequence[str]) -> float:
    return sum(per_query.get(q, {}).get(key, 0.0) for q in qids) / len(qids)


def judged_metrics(
    qrels: Mapping[str, Mapping[str, int]],
    qids: Sequence[str],
    ranked_ids: Sequence[Sequence[str]],
    metrics: Sequence[str] = JUDGED_METRICS,
) -> dict[str, float]:
    """Mean metrics of a ranking over the judged queries (trec_eval).

    Parameters
    ----------
    qrels : mapping
        ``{qid: {doc_id: grade}}``; grade >= 1 is relevant; nDCG uses the grade as
        a linear gain (as trec_eval and BEIR do).
    qids : sequence of str
        Shape: (n_queries,), the queries ``ranked_ids`` answers.
    ranked_ids : sequence of sequence of str
        Shape: (n_queries, <= k); best first.
    metrics : sequence of str
        ``"ndcg@10"``, ``"recall@100"``, ``"mrr@10"``, ``"map@100"``, ``"precision@5"``, ...

    Returns
    -------
    dict[str, float]
        Metric -> mean over every query in ``qrels`` (a judged query that is not
        in ``qids`` scores 0).
    """
    import pytrec_eval

    if not qrels:
        raise DatasetError("qrels: expected at least one judged query, got none")
    unknown = sorted(set(map(str, qids)) - set(map(str, qrels)))
    if unknown:
        raise DatasetError(
            f"queries {unknown[:5]} have no judgments; expected every evaluated query in the qrels"
        )
    parsed = {m: _parse(m) for m in metrics}
    judged = {str(q): {str(d): int(g) for d, g in docs.items()} for q, docs in qrels.items()}
    all_qids = list(judged)
    run = ranked_run(qids, ranked_ids)
    out: dict[str, float] = {}
    plain = {f"{_MEASURES[kind]}.{k}" for kind, k in parsed.values() if kind != "mrr"}
    if plain:
        per_query = pytrec_eval.RelevanceEvaluator(judged, plain).evaluate(run)
        for m, (kind, k) in parsed.items():
            if kind != "mrr":
                out[m] = _mean(per_query, f"{_MEASURES[kind]}_{k}", all_qids)
    for m, (kind, k) in parsed.items():
        if kind == "mrr":
            cut = ranked_run(qids, ranked_ids, depth=k)
            per_query = pytrec_eval.RelevanceEvaluator(judged, {"recip_rank"}).evaluate(cut)
            out[m] = _mean(per_query, "recip_rank", all_qids)
    return {m: out[m] for m in metrics}
