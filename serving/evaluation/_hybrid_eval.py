"""``mvr eval --hybrid``: BM25 alone, mvr alone and the fusions, on judged queries.

Every run ranks the top ``depth`` documents of each judged query; the metrics are
trec_eval's (:func:`serving.evaluation.judged_metrics`): nDCG@10, Recall@100, ...
BM25 is the index's own (bm25s, built alongside each segment from the stored texts).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from serving.evaluation._metrics import judged_metrics

__all__ = ["DEFAULT_FUSIONS", "evaluate_hybrid", "parse_fusions", "format_hybrid"]

DEFAULT_FUSIONS = ("rrf", "weighted")
_BATCH = 32


def parse_fusions(spec: str) -> list[dict[str, Any]]:
    """``"rrf,weighted:0.5,rrf:k=20,weighted:0.7:norescore"`` -> HybridConfig field dicts."""
    from mvr.errors import ConfigError
    from serving._hybrid import parse_hybrid

    out = []
    for item in (x.strip() for x in spec.split(",")):
        if not item:
            continue
        name, *opts = item.split(":")
        cfg: dict[str, Any] = {"fusion": name}
        for o in opts:
            if o == "norescore":
                cfg["rescore"] = False
            elif o.startswith("k="):
                cfg["rrf_k"] = float(o[2:])
            elif o.startswith("depth="):
                cfg["depth"] = int(o[6:])
            else:
                try:
                    cfg["weight"] = float(o)
                except ValueError as e:
                    raise ConfigError(
                        f"--hybrid: expected fusion[:weight][:k=K][:depth=D][:norescore], got {item!r}"
                    ) from e
        parse_hybrid(cfg)  # validate now, with the config's own messages
        out.append(cfg)
    return out


def _label(cfg: dict[str, Any]) -> str:
    parts = [cfg["fusion"]]
    if "weight" in cfg:
        parts.append(f"w={cfg['weight']:g}")
    if "rrf_k" in cfg:
        parts.append(f"k={cfg['rrf_k']:g}")
    if "depth" in cfg:
        parts.append(f"depth={cfg['depth']}")
    if cfg.get("rescore") is False:
        parts.append("no rescore")
    return "fused " + " ".join(parts)


def _bm25_run(searcher: Any, texts: Sequence[str], depth: int) -> list[list[str]]:
    from serving._bm25 import index_bm25

    bm = index_bm25(searcher)
    live = np.asarray(searcher.allowed, dtype=bool)
    out = []
    for text in texts:
        s = np.where(live, bm.scores(text), 0.0)
        m = min(depth, int((s > 0).sum()))
        top = np.argpartition(-s, m - 1)[:m] if m else np.zeros(0, np.int64)
        top = top[np.lexsort((top, -s[top]))]
        out.append([searcher.ids[r] for r in top.tolist()])
    return out


def _batched(fn: Any, texts: Sequence[str]) -> list[list[str]]:
    ids: list[list[str]] = []
    for lo in range(0, len(texts), _BATCH):
        ids += fn(list(texts[lo : lo + _BATCH])).ids
    return ids


def evaluate_hybrid(
    searcher: Any,
    dataset: Any,
    *,
    fusions: Sequence[dict[str, Any]] | None = None,
    depth: int = 100,
    candidates: int | None = None,
    exhaustive: bool = False,
    max_queries: int | None = None,
    metrics: Sequence[str] = ("ndcg@10", "recall@100"),
) -> dict[str, Any]:
    """Judged metrics of BM25 alone, mvr alone (and exhaustive MaxSim) and each fusion.

    Parameters
    ----------
    searcher : serving.Searcher
        An open index whose segments have BM25 indexes (texts stored).
    dataset : BeirDataset
        Judged queries (``indexing.load_beir``).
    fusions : sequence of dict
        ``HybridConfig`` fields per fused run (default: RRF and weighted at defaults).
    depth : int
        Results per query of every run (Recall@100 needs 100).

    Returns
    -------
    dict
        ``{"queries": n, "runs": {name: {metric: value, "seconds": s}}}``.
    """
    fusions = [{"fusion": f} for f in DEFAULT_FUSIONS] if fusions is None else list(fusions)
    qids = list(dataset.queries)[:max_queries]
    texts = [dataset.queries[q] for q in qids]
    runs: dict[str, Any] = {}

    def record(name: str, fn: Any) -> None:
        t = time.perf_counter()
        ranked = fn()
        runs[name] = {**judged_metrics(dataset.qrels, qids, ranked, metrics),
                      "seconds": time.perf_counter() - t}

    record("bm25 (bm25s)", lambda: _bm25_run(searcher, texts, depth))
    record("mvr", lambda: _batched(
        lambda b: searcher.search(b, k=depth, candidates=candidates), texts))
    if exhaustive:
        record("exhaustive MaxSim", lambda: _batched(
            lambda b: searcher.exhaustive(b, k=depth), texts))
    for cfg in fusions:
        hyb = {"depth": depth, **cfg}
        record(_label(cfg), lambda hyb=hyb: _batched(
            lambda b: searcher.search(b, k=depth, candidates=candidates, hybrid=hyb), texts))
    return {"queries": len(qids), "depth": depth, "candidates": candidates, "runs": runs}


def format_hybrid(report: dict[str, Any], metrics: Sequence[str] = ("ndcg@10", "recall@100")) -> str:
    """The runs as a markdown table (nDCG@10, Recall@100, seconds)."""
    from serving.evaluation._report import markdown_table

    rows = [[name, *(r[m] for m in metrics), f"{r['seconds']:.1f}"]
            for name, r in report["runs"].items()]
    return markdown_table(["run", *metrics, "seconds"], rows)


def write_hybrid_report(report: dict[str, Any], out_dir: str | os.PathLike[str]) -> Path:
    from serving.evaluation._report import write_json

    path = Path(out_dir)
    path.mkdir(parents=True, exist_ok=True)
    return write_json(report, path / "hybrid.json")


def run_hybrid_cli(
    index: Path, dataset: Path, *, split: str, output: Path | None, encoder: str | None,
    mode: str, fusions: str, candidates: int | None, max_queries: int | None, exhaustive: bool,
    as_json: bool,
) -> None:
    """``mvr eval INDEX --dataset D --hybrid``: print the table, write ``hybrid.json``."""
    import json

    import typer

    from indexing.corpus import load_beir
    from serving._searcher import Searcher

    enc = None
    if encoder is not None:
        import encoders

        enc = encoders.load(encoder)
    ds = load_beir(dataset, split)
    with Searcher.open(index, encoder=enc, mode=mode) as s:
        report = evaluate_hybrid(s, ds, fusions=parse_fusions(fusions), candidates=candidates,
                                 exhaustive=exhaustive, max_queries=max_queries)
    out = output or Path("mvr-eval") / f"{Path(dataset).resolve().name}-{split}"
    path = write_hybrid_report(report, out)
    typer.echo(json.dumps(report, indent=2) if as_json else format_hybrid(report))
    if not as_json:
        typer.echo(f"\nreport: {path}")
