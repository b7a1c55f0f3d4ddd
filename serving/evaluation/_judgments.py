"""How an evaluation treats its judgments: unknown judged ids, identical ids, none at all.

* A qrels line may judge a document the index does not hold (a corpus that changed,
  a filtered build). trec_eval counts it as a relevant document that was never
  retrieved (it lowers recall and the ideal DCG); :func:`note_unknown_judged` says so
  once, with the count and the ids, and the evaluation goes on.
* BEIR drops a hit whose id equals the query id before scoring
  (``EvaluateRetrieval.evaluate(ignore_identical_ids=True)``): on datasets where
  queries are also documents (ArguAna, Quora, CQADupStack) the query itself would
  otherwise top every ranking. :func:`drop_identical_ids` does the same.
* A dataset without qrels (corpus and queries only) is evaluated against exhaustive
  MaxSim alone; :data:`NO_JUDGMENTS` is what the report and the log say.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from indexing.corpus import BeirDataset

__all__ = ["drop_identical_ids", "note_unknown_judged", "NO_JUDGMENTS", "logger"]

logger = logging.getLogger("serving.evaluation")

NO_JUDGMENTS = ("no relevance judgments (no qrels/ folder) in {path}: evaluated against "
                "exhaustive MaxSim only")
_SHOWN = 20


def note_unknown_judged(dataset: BeirDataset, index_ids: Sequence[str]) -> dict[str, Any]:
    """Log one warning naming the judged document ids the index lacks (if any).

    Returns
    -------
    dict
        ``{"count": n, "ids": [...]}`` for the report (all of the ids).
    """
    unknown = dataset.unknown_doc_ids(index_ids)
    if unknown:
        first = dataset.first_judgment_of(unknown[:1])
        where = f" (first at {dataset.qrels_path}:{first[0]})" if first else ""
        shown = ", ".join(repr(d) for d in unknown[:_SHOWN])
        more = f", ... ({len(unknown) - _SHOWN} more)" if len(unknown) > _SHOWN else ""
        logger.warning(
            "%d judged document id(s) are not in the index%s: %s%s; they count as relevant "
            "documents never retrieved (trec_eval semantics)",
            len(unknown), where, shown, more,
        )
    return {"count": len(unknown), "ids": unknown}


def drop_identical_ids(
    qids: Sequence[str], ranked_ids: Sequence[Sequence[str]]
) -> list[list[str]]:
    """Each ranking without the hit whose id equals its query's id (as BEIR does).

    Parameters
    ----------
    qids : sequence of str
        Shape: (n_queries,).
    ranked_ids : sequence of sequence of str
        Shape: (n_queries, <= k); best first.
    """
    return [[d for d in ids if d != q] for q, ids in zip(qids, ranked_ids, strict=True)]
