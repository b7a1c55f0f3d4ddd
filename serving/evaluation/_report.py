"""Rendering an evaluation report: markdown tables, JSON, PNG plots (matplotlib, Agg)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mvr._durable import atomic_write_bytes

__all__ = ["format_report", "write_json", "plot_report", "markdown_table"]

_METRIC_LABELS = {
    "ndcg@10": "nDCG@10",
    "recall@10": "R@10",
    "recall@100": "R@100",
    "mrr@10": "MRR@10",
    "map@100": "MAP@100",
}


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table; floats with 4 decimals, None as '-'."""

    def cell(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return "-" if math.isnan(v) else f"{v:.4f}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _judged_table(report: dict[str, Any]) -> str:
    metrics = report["settings"]["metrics"]
    n_search = report["settings"]["search_candidates"]
    names = {
        "exhaustive": "exhaustive MaxSim",
        "first_stage": "first stage only (FDE)",
        "mvr": f"mvr (N={n_search} re-ranked)",
    }
    rows = [[names[name], *(vals[m] for m in metrics)] for name, vals in report["judged"].items()]
    return markdown_table(["ranking", *(_METRIC_LABELS.get(m, m) for m in metrics)], rows)


def _by_n_table(report: dict[str, Any]) -> str:
    k = report["settings"]["k"]
    ks = report["settings"]["ks"]
    backend, section = next(iter(report["candidate_recall"].items()))
    judged = report["judged"] is not None
    header = ["N", *(f"cand. recall top-{kk}" for kk in ks), f"R@{k} vs exh."]
    header += ["nDCG@10", "R@100"] if judged else []
    rows = []
    for j, n in enumerate(section["ns"]):
        by = report["judged_by_candidates"][str(n)]
        rows.append(
            [
                n,
                *(section["recall"][str(kk)][j] for kk in ks),
                by[f"recall@{k}_vs_exhaustive"],
                *((by["ndcg@10"], by["recall@100"]) if judged else ()),
            ]
        )
    return f"first stage: {backend}\n\n" + markdown_table(header, rows)


def _needed_table(report: dict[str, Any]) -> str:
    targets = report["settings"]["targets"]
    n_max = max(report["settings"]["candidates"])
    rows = []
    for backend, section in report["candidate_recall"].items():
        for kk in section["ks"]:
            needed = section["needed"][str(kk)]
            rows.append(
                [
                    backend,
                    f"top-{kk}",
                    *(
                        needed[str(t)] if needed[str(t)] is not None else f">{n_max}"
                        for t in targets
                    ),
                ]
            )
    return markdown_table(["first stage", "exhaustive", *(f"N for {t:.0%}" for t in targets)], rows)


def format_report(report: dict[str, Any]) -> str:
    """The printed summary: judged metrics, recall by N, candidates needed, the gap."""
    ds, idx = report["dataset"], report["index"]
    fde = idx["fde"]
    head = (
        f"## {Path(ds['path']).name} ({ds['split']}, {ds['queries']} queries) on "
        f"{idx['documents']} documents\n\n"
        f"index: FDE R={fde['num_repetitions']} k={fde['num_simhash_projections']} "
        f"d_proj={fde['projection_dim']} final={fde['final_projection_dim']} -> "
        f"{idx['fde_dim']} dims; pool_factor={idx['pooling']['pool_factor']}; "
        f"first stage {'+'.join(idx['first_stage'])}; {idx['tokens']} tokens"
    )
    k = report["settings"]["k"]
    e2e = report["end_to_end"]
    gap = report["gap"]
    tail = (
        f"End-to-end Recall@{k} vs exhaustive at N={e2e['candidates']}: "
        f"{e2e[f'recall@{k}_vs_exhaustive']:.4f}."
    )
    if gap is not None:
        tail += (f" nDCG@10 below exhaustive by {gap['ndcg@10']:.4f} "
                 f"({gap['ndcg@10_relative']:.2%} relative; negative = above).")
    notes = []
    if ds.get("note"):
        notes.append(ds["note"] + ".")
    unknown = ds.get("unknown_judged") or {}
    if unknown.get("count"):
        notes.append(f"{unknown['count']} judged document id(s) are not in the index; they "
                     "count as relevant documents never retrieved (trec_eval semantics).")
    if report["judged"] is not None and report["settings"].get("ignore_identical_ids"):
        notes.append("Hits whose id equals the query id are dropped before the judged metrics "
                     "(BEIR's ignore_identical_ids).")
    sections = [head, *(["\n".join(notes)] if notes else [])]
    if report["judged"] is not None:
        sections.append("### Against the judgments\n\n" + _judged_table(report))
    return "\n\n".join(
        [
            *sections,
            "### Against exhaustive MaxSim, by first-stage candidates N\n\n" + _by_n_table(report),
            "### Candidates needed (MUVERA Table 1 shape)\n\n" + _needed_table(report),
            tail,
        ]
    )


def write_json(report: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``report`` as indented JSON, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(report, indent=2, sort_keys=False) + "\n").encode())
    return path


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_report(report: dict[str, Any], out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """``recall_vs_n.png`` (candidate recall per first stage and k) and
    ``ndcg_vs_n.png`` (nDCG@10 after re-ranking N candidates, with exhaustive and
    first-stage-only lines). Returns their paths."""
    plt = _pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = Path(report["dataset"]["path"]).name
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    styles = ["-", "--", ":", "-."]
    for b, (backend, section) in enumerate(report["candidate_recall"].items()):
        for c, kk in enumerate(section["ks"]):
            curve = section["curve"][str(kk)]
            ax.plot(
                range(1, len(curve) + 1),
                curve,
                ls=styles[b % len(styles)],
                color=f"C{c}",
                label=f"{backend}, top-{kk}",
            )
    ax.set_xscale("log")
    ax.set_xlabel("first-stage candidates N")
    ax.set_ylabel("recall of exhaustive MaxSim top-k")
    ax.set_ylim(0, 1.01)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{name}: candidate recall vs N (FDE {report['index']['fde_dim']} dims)")
    fig.tight_layout()
    recall_png = out / "recall_vs_n.png"
    fig.savefig(recall_png, dpi=110)
    plt.close(fig)
    if report["judged"] is None:  # no judgments: no nDCG to plot
        return {"recall_plot": recall_png}

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ns = report["settings"]["candidates"]
    ax.plot(
        ns,
        [report["judged_by_candidates"][str(n)]["ndcg@10"] for n in ns],
        "o-",
        label="mvr: re-rank N candidates",
    )
    ax.axhline(
        report["judged"]["exhaustive"]["ndcg@10"], color="k", ls="--", label="exhaustive MaxSim"
    )
    ax.axhline(
        report["judged"]["first_stage"]["ndcg@10"], color="grey", ls=":", label="first stage only"
    )
    ax.set_xscale("log")
    ax.set_xlabel("first-stage candidates N")
    ax.set_ylabel("nDCG@10")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{name}: nDCG@10 vs N")
    fig.tight_layout()
    ndcg_png = out / "ndcg_vs_n.png"
    fig.savefig(ndcg_png, dpi=110)
    plt.close(fig)
    return {"recall_plot": recall_png, "ndcg_plot": ndcg_png}
