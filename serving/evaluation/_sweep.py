"""Sweeps: rebuild an index per configuration from cached encoder vectors and compare.

Axes: FDE configurations (R, k, d_proj, final projection), pool factors and
first-stage backends. Every combination is built from the same precomputed
document vectors (``encoders.load(path)``; no model runs), evaluated with
:func:`evaluate` (query vectors from the same cache; exhaustive MaxSim shared by
every index with the same token table, i.e. the same pool factor), and summarised
in one table. Finished combinations are reused, so an interrupted sweep resumes.

FDE spec strings (``parse_fde_spec``):

* ``r20k5d16`` -- R=20 repetitions, k=5 SimHash bits, d_proj=16; append
  ``f4096`` for a final projection to 4096 dims; ``dnone`` = identity projection;
* a bare dimension such as ``10240`` -- k=5, d_proj=16 and R = dim / 512.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from indexing.corpus import load_beir
from mvr._config import FDEConfig
from mvr._index_config import FIRST_STAGE_KINDS, IndexConfig
from mvr.errors import ConfigError
from serving.evaluation._evaluate import DEFAULT_CANDIDATES, DEFAULT_KS, DEFAULT_TARGETS, evaluate
from serving.evaluation._report import markdown_table, write_json

__all__ = ["parse_fde_spec", "parse_sweep", "sweep", "format_sweep", "plot_sweep"]

_SPEC = re.compile(r"^r(\d+)k(\d+)(?:d(\d+|none))?(?:f(\d+))?$")
_BASE_PARTITIONS, _BASE_DPROJ = 5, 16


def parse_fde_spec(spec: str, dim: int, seed: int = 42) -> FDEConfig:
    """An :class:`FDEConfig` from ``r20k5d16[f4096]`` or a bare output dimension."""
    s = spec.strip().lower()
    if s.isdigit():
        total = int(s)
        per_rep = (1 << _BASE_PARTITIONS) * _BASE_DPROJ
        if total < per_rep or total % per_rep:
            raise ConfigError(
                f"fde spec {spec!r}: a bare dimension must be a multiple of {per_rep} "
                f"(k={_BASE_PARTITIONS}, d_proj={_BASE_DPROJ}); use rRkKdD[fF] otherwise"
            )
        return FDEConfig(
            dim=dim,
            num_repetitions=total // per_rep,
            num_simhash_projections=_BASE_PARTITIONS,
            projection_dim=_BASE_DPROJ,
            seed=seed,
        )
    m = _SPEC.match(s)
    if m is None:
        raise ConfigError(
            f"fde spec: expected 'rRkK[dD][fF]' (e.g. r20k5d16, r20k5d16f4096) or a dimension "
            f"(e.g. 10240), got {spec!r}"
        )
    r, k, d, f = m.groups()
    return FDEConfig(
        dim=dim,
        num_repetitions=int(r),
        num_simhash_projections=int(k),
        projection_dim=None if d == "none" else int(d or _BASE_DPROJ),
        final_projection_dim=None if f is None else int(f),
        seed=seed,
    )


def fde_name(cfg: FDEConfig) -> str:
    d = "none" if cfg.projection_dim is None else str(cfg.projection_dim)
    f = "" if cfg.final_projection_dim is None else f"f{cfg.final_projection_dim}"
    return f"r{cfg.num_repetitions}k{cfg.num_simhash_projections}d{d}{f}"


def parse_sweep(text: str) -> dict[str, list[str]]:
    """``"fde=2560,5120,pool=1,2,stage=exact,hnsw"`` -> ``{"fde": [...], "pool": [...], ...}``.

    A comma-separated list where ``key=value`` starts a new axis and bare values
    continue the current one (``;`` also separates axes). Keys: ``fde``, ``pool``,
    ``stage``.
    """
    axes: dict[str, list[str]] = {}
    current: str | None = None
    for token in re.split(r"[,;]", text):
        token = token.strip()
        if not token:
            continue
        if "=" in token:
            current, _, token = (t.strip() for t in token.partition("="))
            if current not in ("fde", "pool", "stage"):
                raise ConfigError(f"--sweep: expected keys fde, pool, stage; got {current!r}")
            if current in axes:
                raise ConfigError(f"--sweep: axis {current!r} given twice")
            axes[current] = []
            if not token:
                continue
        if current is None:
            raise ConfigError(f"--sweep: expected 'key=value' first, got {token!r} in {text!r}")
        axes[current].append(token)
    if not axes or any(not v for v in axes.values()):
        raise ConfigError(f"--sweep: expected e.g. 'fde=5120,10240,pool=1,2', got {text!r}")
    return axes


def _combinations(
    axes: dict[str, list[str]], dim: int, base: IndexConfig
) -> list[tuple[str, IndexConfig]]:
    base = base.resolved(dim)
    base_fde = base.fde if base.fde is not None else FDEConfig(dim=dim)
    fdes = [parse_fde_spec(s, dim, base_fde.seed) for s in axes.get("fde", [])] or [base_fde]
    pools: list[int] = []
    for p in axes.get("pool", []):
        if not p.isdigit() or int(p) < 1:
            raise ConfigError(f"--sweep pool: expected positive ints, got {p!r}")
        pools.append(int(p))
    pools = pools or [base.pooling.pool_factor]
    stages = axes.get("stage", []) or [base.first_stage.kind]
    for st in stages:
        if st not in FIRST_STAGE_KINDS:
            raise ConfigError(f"--sweep stage: expected one of {FIRST_STAGE_KINDS}, got {st!r}")
    out = []
    for p in pools:
        for fde in fdes:
            for st in stages:
                cfg = dataclasses.replace(
                    base,
                    fde=fde,
                    pooling=dataclasses.replace(base.pooling, pool_factor=p),
                    first_stage=dataclasses.replace(base.first_stage, kind=st),
                )
                out.append((f"pool{p}-{fde_name(fde)}-{st}", cfg))
    return out


def sweep(
    dataset: str | os.PathLike[str],
    vectors: str | os.PathLike[str],
    work_dir: str | os.PathLike[str],
    axes: dict[str, list[str]] | str,
    *,
    base: IndexConfig | None = None,
    split: str = "test",
    candidates: Sequence[int] = DEFAULT_CANDIDATES,
    ks: Sequence[int] = DEFAULT_KS,
    targets: Sequence[float] = DEFAULT_TARGETS,
    k: int = 10,
    search_candidates: int | None = None,
    max_queries: int | None = None,
    keep_indexes: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    plots: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Build and evaluate every combination of the sweep axes.

    Parameters
    ----------
    dataset : path
        BEIR-layout dataset directory.
    vectors : path
        Precomputed vectors (``documents`` + ``queries`` tables, as written by
        ``scripts/encode_corpus.py``).
    work_dir : path
        Indexes go to ``work_dir/indexes/<name>`` (removed after evaluation unless
        ``keep_indexes``), reports to ``work_dir/runs/<name>/``, the shared cache to
        ``work_dir/cache``, the summary to ``work_dir/sweep.json`` (+ plots).
    axes : dict or str
        ``{"fde": [...], "pool": [...], "stage": [...]}`` or its ``--sweep`` string.
    base : IndexConfig, optional
        Settings not swept (default ``IndexConfig()``).
    cache_dir : path, optional
        Query-vector and exhaustive-MaxSim cache (default ``work_dir/cache``); share
        it with :func:`evaluate` runs on the same vectors.
    The other parameters are those of :func:`evaluate`.

    Returns
    -------
    dict
        ``{"dataset", "vectors", "axes", "rows": [...]}``; one row per combination.
    """
    import encoders
    from indexing import build_index
    from indexing._precomputed_docs import PrecomputedDocuments

    axes = parse_sweep(axes) if isinstance(axes, str) else axes
    work = Path(work_dir)
    ds = load_beir(dataset, split)
    enc = encoders.load(str(vectors))
    rows = []
    combos = _combinations(axes, enc.dim, base or IndexConfig())
    for i, (name, cfg) in enumerate(combos, start=1):
        out_dir = work / "runs" / name
        report = _finished(out_dir, cfg)
        if report is None:
            index_dir = work / "indexes" / name
            if progress:
                print(f"[{i}/{len(combos)}] building {name}", flush=True)
            manifest = build_index(
                index_dir, PrecomputedDocuments(enc), enc, cfg, progress=progress, overwrite=True
            )
            report = evaluate(
                index_dir,
                ds,
                encoder=enc,
                output_dir=out_dir,
                cache_dir=Path(cache_dir) if cache_dir is not None else work / "cache",
                candidates=candidates,
                ks=ks,
                targets=targets,
                k=k,
                search_candidates=search_candidates,
                max_queries=max_queries,
                plots=False,
                progress=progress,
            )
            report["build_timings"] = manifest.get("build_timings", {})
            report["sweep_config"] = cfg.to_dict()
            write_json(report, out_dir / "report.json")
            if not keep_indexes:
                shutil.rmtree(index_dir, ignore_errors=True)
        rows.append(_row(name, cfg, report))
    summary = {
        "dataset": str(dataset),
        "split": split,
        "vectors": str(vectors),
        "axes": axes,
        "rows": rows,
    }
    write_json(summary, work / "sweep.json")
    if plots:
        summary["plots"] = {k_: str(v) for k_, v in plot_sweep(summary, work / "plots").items()}
        write_json(summary, work / "sweep.json")
    return summary


def _finished(out_dir: Path, cfg: IndexConfig) -> dict[str, Any] | None:
    path = out_dir / "report.json"
    if not path.is_file():
        return None
    report = json.loads(path.read_text(encoding="utf-8"))
    return report if report.get("sweep_config") == cfg.to_dict() else None


def _row(name: str, cfg: IndexConfig, report: dict[str, Any]) -> dict[str, Any]:
    fde = cfg.fde if cfg.fde is not None else FDEConfig(dim=report["index"]["dim"])
    k = report["settings"]["k"]
    section = next(iter(report["candidate_recall"].values()))
    top = str(10 if 10 in section["ks"] else section["ks"][0])
    return {
        "name": name,
        "fde": fde_name(fde),
        "fde_dim": report["index"]["fde_dim"],
        "pool_factor": cfg.pooling.pool_factor,
        "first_stage": cfg.first_stage.kind,
        "tokens": report["index"]["tokens"],
        "ndcg@10": report["judged"]["mvr"]["ndcg@10"],
        "recall@100": report["judged"]["mvr"]["recall@100"],
        "exhaustive_ndcg@10": report["judged"]["exhaustive"]["ndcg@10"],
        "first_stage_ndcg@10": report["judged"]["first_stage"]["ndcg@10"],
        "search_candidates": report["settings"]["search_candidates"],
        f"recall@{k}_vs_exhaustive": report["end_to_end"][f"recall@{k}_vs_exhaustive"],
        "top": int(top),
        "ns": section["ns"],
        "candidate_recall": section["recall"][top],
        "needed": section["needed"][top],
        "ndcg_by_n": [report["judged_by_candidates"][str(n)]["ndcg@10"] for n in section["ns"]],
        "build_seconds": report.get("build_timings", {}).get("total"),
    }


def format_sweep(summary: dict[str, Any], reference_ndcg: float | None = None) -> str:
    """One markdown table: a row per combination.

    ``reference_ndcg``: the unpooled exhaustive nDCG@10 (default: taken from a
    pool-factor-1 row when there is one) for the "vs ceiling" column.
    """
    rows = summary["rows"]
    if reference_ndcg is None:
        ones = [r["exhaustive_ndcg@10"] for r in rows if r["pool_factor"] == 1]
        reference_ndcg = ones[0] if ones else None
    first = rows[0]
    ns = first["ns"]
    show = [n for n in ns if n in (50, 100, 200, 500)] or ns[:3]
    targets = list(first["needed"])
    header = [
        "FDE",
        "dim",
        "pool",
        "stage",
        "tokens",
        f"nDCG@10 (N={first['search_candidates']})",
        "exh. nDCG@10",
        "vs ceiling",
        *(f"top-{first['top']} recall N={n}" for n in show),
        *(f"N for {float(t):.0%}" for t in targets),
        f"R@10 vs exh. (N={first['search_candidates']})",
    ]
    body = []
    for r in rows:
        rec = dict(zip(r["ns"], r["candidate_recall"], strict=True))
        body.append(
            [
                r["fde"],
                r["fde_dim"],
                r["pool_factor"],
                r["first_stage"],
                r["tokens"],
                r["ndcg@10"],
                r["exhaustive_ndcg@10"],
                None if reference_ndcg is None else r["ndcg@10"] - reference_ndcg,
                *(rec.get(n) for n in show),
                *(
                    r["needed"][t] if r["needed"][t] is not None else f">{max(r['ns'])}"
                    for t in targets
                ),
                next(v for key, v in r.items() if key.endswith("_vs_exhaustive")),
            ]
        )
    return markdown_table(header, body)


def plot_sweep(summary: dict[str, Any], out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """``sweep_recall.png`` (candidate recall of the exhaustive top-10 vs N) and
    ``sweep_ndcg.png`` (nDCG@10 after re-ranking N): one line per combination; one
    panel per pool factor when several FDE configurations share a pool factor."""
    from serving.evaluation._report import _pyplot

    plt = _pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = summary["rows"]
    pools = sorted({r["pool_factor"] for r in rows})
    per_pool = max(sum(1 for r in rows if r["pool_factor"] == p) for p in pools)
    panels: list[int | None] = list(pools) if per_pool > 1 else [None]
    name = Path(summary["dataset"]).name
    paths = {}
    for key, ylabel, fname in (
        ("candidate_recall", "recall of exhaustive top-{top}", "sweep_recall.png"),
        ("ndcg_by_n", "nDCG@10 after re-ranking N", "sweep_ndcg.png"),
    ):
        fig, axes = plt.subplots(
            1, len(panels), figsize=(4.4 * len(panels) + 1, 3.9), squeeze=False, sharey=True
        )
        for ax, p in zip(axes[0], panels, strict=True):
            mine = [r for r in rows if p is None or r["pool_factor"] == p]
            for c, r in enumerate(mine):
                label = f"{r['fde']} ({r['fde_dim']}) pool {r['pool_factor']} {r['first_stage']}"
                ax.plot(r["ns"], r[key], "o-", ms=3, color=f"C{c}", label=label)
                if key == "ndcg_by_n" and (p is not None or len(pools) > 1):
                    ax.axhline(r["exhaustive_ndcg@10"], color=f"C{c}", ls="--", lw=0.8)
            if key == "ndcg_by_n":
                ax.axhline(
                    mine[0]["exhaustive_ndcg@10"],
                    color="k",
                    ls="--",
                    lw=0.8,
                    label="exhaustive MaxSim (dashed)",
                )
            ax.set_xscale("log")
            ax.set_title(f"{name}" + ("" if p is None else f": pool factor {p}"))
            ax.set_xlabel("first-stage candidates N")
            ax.grid(True, which="both", alpha=0.3)
        axes[0][0].set_ylabel(ylabel.format(top=rows[0]["top"]))
        axes[0][-1].legend(fontsize=7)
        fig.tight_layout()
        path = out / fname
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths[fname.removesuffix(".png")] = path
    return paths
