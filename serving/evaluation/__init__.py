"""Offline evaluation: judged metrics, candidate recall against exhaustive MaxSim, sweeps.

* :func:`evaluate`: an index on a BEIR-layout dataset -- nDCG@10, Recall@10/100,
  MRR@10, MAP@100 (trec_eval via pytrec-eval-terrier) of exhaustive MaxSim, the first
  stage and mvr; candidate recall of the exhaustive top-k over a grid of N and the N
  needed per recall level (MUVERA Table 1 shape); end-to-end Recall@k vs exhaustive;
  TREC runs, ``report.json`` and PNG plots. :func:`format_report` prints it.
* :func:`sweep`: rebuild from cached encoder vectors over FDE configurations, pool
  factors and first stages; :func:`format_sweep` prints one table.
* Building blocks: :func:`judged_metrics`, :func:`candidate_recall`,
  :func:`candidates_needed`, :func:`overlap_at_k`, TREC run files.
"""

from serving.evaluation._evaluate import (
    DEFAULT_CANDIDATES,
    DEFAULT_KS,
    DEFAULT_TARGETS,
    evaluate,
    rerank_prefix,
)
from serving.evaluation._metrics import JUDGED_METRICS, judged_metrics
from serving.evaluation._recall import candidate_recall, candidates_needed, overlap_at_k
from serving.evaluation._report import format_report, plot_report
from serving.evaluation._runs import read_trec_run, write_trec_run
from serving.evaluation._sweep import format_sweep, parse_fde_spec, parse_sweep, plot_sweep, sweep

__all__ = [
    "evaluate",
    "format_report",
    "plot_report",
    "sweep",
    "parse_sweep",
    "parse_fde_spec",
    "format_sweep",
    "plot_sweep",
    "rerank_prefix",
    "DEFAULT_CANDIDATES",
    "DEFAULT_KS",
    "DEFAULT_TARGETS",
    "JUDGED_METRICS",
    "judged_metrics",
    "candidate_recall",
    "candidates_needed",
    "overlap_at_k",
    "read_trec_run",
    "write_trec_run",
]
