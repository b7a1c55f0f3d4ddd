"""End-to-end quality on SciFact (test split) against exhaustive MaxSim.

Uses the cached default-encoder vectors (``scripts/encode_corpus.py`` writes them to
``.cache/vectors/scifact``), builds indexes with pool_factor 1 and 2 (exact first
stage) and, at pool_factor 2, HNSW and IVF-PQ (PQ-256-8) first stages, then prints
markdown tables:

* nDCG@10 (ranx) of exhaustive MaxSim and of the pipeline at N candidates, and the
  pipeline's Recall@10 against exhaustive MaxSim over the same pooled vectors;
* the smallest N whose Recall@10 >= 0.99;
* first-stage candidate recall of the exhaustive top-10 at N in {10, ..., 1000}.

Usage::

    python scripts/quality_scifact.py [--vectors .cache/vectors/scifact] \
        [--data ../shared/data/scifact] [--work .cache/indexes] [--kinds exact,hnsw,ivfpq]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

NS = [10, 20, 50, 100, 200, 300, 500]  # end-to-end grid of the main index (pf2, exact)
NS_OTHERS = [100, 200, 500]  # end-to-end grid of the other indexes (re-ranking is the cost)
CAND_NS = [10, 50, 100, 200, 500, 600, 700, 800, 900, 1000]


def build(path: Path, enc: Any, pool_factor: int, kind: str, force: bool) -> dict[str, Any]:
    """Build (or reuse) an index of the precomputed SciFact documents."""
    from indexing import build_index
    from indexing._precomputed_docs import PrecomputedDocuments
    from mvr import FirstStageConfig, IndexConfig, PoolingConfig
    from mvr._manifest import read_manifest
    from mvr.errors import MVRError

    cfg = IndexConfig(pooling=PoolingConfig(pool_factor=pool_factor),
                      first_stage=FirstStageConfig(kind=kind), batch_size=256)
    try:
        m = read_manifest(path)
        if not force and m["config"] == cfg.resolved(enc.dim).to_dict():
            return {"reused": True, **m}
    except MVRError:
        pass
    t = time.perf_counter()
    m = build_index(path, PrecomputedDocuments(enc), enc, cfg, progress=True, overwrite=True)
    m["wall"] = time.perf_counter() - t
    return m


def ndcg10(qrels: dict[str, dict[str, int]], qids: list[str], ids: list[list[str]],
           scores: list[np.ndarray]) -> float:
    from ranx import Qrels, Run, evaluate

    run = {q: {d: float(s) for d, s in zip(i, sc, strict=True)}
           for q, i, sc in zip(qids, ids, scores, strict=True)}
    return float(evaluate(Qrels({q: qrels[q] for q in qids}), Run(run), "ndcg@10"))


def overlap(a: list[list[str]], b: list[list[str]], k: int = 10) -> float:
    return float(np.mean([len(set(x[:k]) & set(y[:k])) / max(len(y[:k]), 1)
                          for x, y in zip(a, b, strict=True)]))


def evaluate_index(path: Path, q: Any, qids: list[str], qrels: dict[str, Any],
                   exhaustive: Any | None, ns: list[int]) -> dict[str, Any]:
    from serving import Searcher

    out: dict[str, Any] = {"e2e": {}, "cand": {}}
    with Searcher.open(path, verify=False) as s:
        ex = exhaustive or s.exhaustive(q, k=100)
        out["exhaustive"] = ex
        out["ndcg_exhaustive"] = ndcg10(qrels, qids, ex.ids, ex.scores)
        first = s.search(q, k=max(CAND_NS), candidates=max(CAND_NS), rerank=False)
        for n in CAND_NS:
            out["cand"][n] = float(np.mean([
                len(set(e[:10]) & set(f[:n])) / 10 for e, f in zip(ex.ids, first.ids, strict=True)
            ]))
        for n in ns:
            res = s.search(q, k=10, candidates=n)
            out["e2e"][n] = {"recall": overlap(res.ids, ex.ids),
                             "ndcg": ndcg10(qrels, qids, res.ids, res.scores)}
        out["stats"] = s.stats()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vectors", default=".cache/vectors/scifact")
    ap.add_argument("--data", default="../shared/data/scifact")
    ap.add_argument("--work", default=".cache/indexes")
    ap.add_argument("--kinds", default="exact,hnsw,ivfpq")
    ap.add_argument("--force", action="store_true", help="rebuild indexes")
    ap.add_argument("--json", default=None, help="also write the numbers here")
    args = ap.parse_args()

    import encoders
    from indexing.corpus import load_beir

    enc = encoders.load(args.vectors)
    data = load_beir(args.data, "test")
    qtable = enc.table("queries")
    qids = [i for i in data.qrels if i in set(qtable.ids)]
    q = enc.encode_queries(qids)
    work = Path(args.work)
    rows: dict[str, Any] = {}
    builds: dict[str, Any] = {}
    for pf, kind in [(2, "exact"), (1, "exact")] + [(2, k) for k in args.kinds.split(",")
                                                      if k != "exact"]:
        name = f"scifact-pf{pf}-{kind}"
        m = build(work / name, enc, pf, kind, args.force)
        builds[name] = {"documents": m["counts"]["documents"], "tokens": m["counts"]["tokens"],
                        "timings": m.get("build_timings"), "reused": m.get("reused", False)}
        reuse = rows.get("scifact-pf2-exact", {}).get("exhaustive") if pf == 2 else None
        ns = NS if name == "scifact-pf2-exact" else NS_OTHERS
        rows[name] = evaluate_index(work / name, q, qids, data.qrels, reuse, ns)
        print(f"{name}: done", flush=True)

    print(f"\nSciFact test: {len(qids)} queries, {builds['scifact-pf2-exact']['documents']} documents\n")
    print("| index | tokens | nDCG@10 exhaustive | N | nDCG@10 | Recall@10 vs exhaustive |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        for n, e in r["e2e"].items():
            print(f"| {name} | {builds[name]['tokens']} | {r['ndcg_exhaustive']:.4f} | {n} | "
                  f"{e['ndcg']:.4f} | {e['recall']:.4f} |")
    print("\nSmallest N with Recall@10 >= 0.99 (and its nDCG@10 relative to exhaustive):\n")
    print("| index | N | Recall@10 | nDCG@10 / exhaustive |")
    print("|---|---|---|---|")
    for name, r in rows.items():
        grid = sorted(r["e2e"])
        ok = [n for n in grid if r["e2e"][n]["recall"] >= 0.99]
        if ok:
            n = ok[0]
            print(f"| {name} | {n} | {r['e2e'][n]['recall']:.4f} | "
                  f"{r['e2e'][n]['ndcg'] / r['ndcg_exhaustive']:.4f} |")
        else:
            print(f"| {name} | > {grid[-1]} | {r['e2e'][grid[-1]]['recall']:.4f} | - |")
    print("\nFirst-stage candidate recall of the exhaustive-MaxSim top-10:\n")
    print("| index | " + " | ".join(f"N={n}" for n in CAND_NS) + " |")
    print("|---|" + "---|" * len(CAND_NS))
    for name, r in rows.items():
        print(f"| {name} | " + " | ".join(f"{r['cand'][n]:.3f}" for n in CAND_NS) + " |")
    pf1, pf2 = rows["scifact-pf1-exact"], rows["scifact-pf2-exact"]
    print(f"\npool_factor 2 vs 1: exhaustive nDCG@10 {pf2['ndcg_exhaustive']:.4f} vs "
          f"{pf1['ndcg_exhaustive']:.4f} ({100 * (pf2['ndcg_exhaustive'] / pf1['ndcg_exhaustive'] - 1):+.2f}%), "
          f"tokens {builds['scifact-pf2-exact']['tokens']} vs {builds['scifact-pf1-exact']['tokens']}")
    if args.json:
        slim = {k: {kk: vv for kk, vv in v.items() if kk != "exhaustive"} for k, v in rows.items()}
        Path(args.json).write_text(json.dumps({"rows": slim, "builds": builds}, indent=1,
                                              default=str))


if __name__ == "__main__":
    main()
