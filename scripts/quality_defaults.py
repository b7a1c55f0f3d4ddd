"""End-to-end quality and latency of the default IndexConfig on a judged BEIR dataset.

Builds an index of the cached default-encoder vectors (``scripts/encode_corpus.py``) at
``mvr.IndexConfig()`` (whatever the defaults are now), serves it in ``ssd`` mode and
reports, over the test queries: nDCG@10 (ranx) of exhaustive MaxSim and of search at the
defaults, Recall@10 against exhaustive MaxSim over the same pooled vectors, and p50/p95
latency at batch 1 on one thread (query encoding excluded). ``--points`` adds
search-time operating points; ``--config`` changes IndexConfig fields for the build.

Usage::

    python scripts/quality_defaults.py --vectors .cache/vectors/scifact \
        --data ../shared/data/scifact --work .cache/indexes/scifact-defaults
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from quality_scifact import ndcg10, overlap  # noqa: E402  (scripts/ is on sys.path)


def measure(s: Any, q: Any, qids: list[str], qrels: dict[str, Any], ex: Any,
            kw: dict[str, Any]) -> dict[str, Any]:
    """One operating point: search keywords, plus ``centroid_candidates`` / ``token_*`` /
    ``centroid_nprobe``, which replace the index config's for the run."""
    import dataclasses

    point = dict(kw)
    kw = dict(kw)
    cfg = {k: kw.pop(k) for k in ("centroid_candidates", "centroid_nprobe", "token_candidates",
                                  "token_nprobe", "token_kprime", "candidate_tokens") if k in kw}
    s.config = dataclasses.replace(s.config, **cfg)
    s.search(q[:4], k=10, **kw)  # warm-up (numba, faiss)
    lat, ids, scores, stages = [], [], [], {}
    for i in range(len(q)):
        t = time.perf_counter()
        r = s.search(q[i : i + 1], k=10, **kw)
        lat.append(time.perf_counter() - t)
        ids += r.ids
        scores += r.scores
        for name, v in r.timings.items():
            stages.setdefault(name, []).append(v)
    return {**point, "ndcg10": ndcg10(qrels, qids, ids, scores), "recall10_vs_exhaustive":
            overlap(ids, ex.ids), "p50_ms": 1e3 * float(np.median(lat)),
            "p95_ms": 1e3 * float(np.percentile(lat, 95)),
            "stage_p50_ms": {k: round(1e3 * float(np.median(v)), 3) for k, v in stages.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vectors", default=".cache/vectors/scifact")
    ap.add_argument("--data", default="../shared/data/scifact")
    ap.add_argument("--work", default=".cache/indexes/scifact-defaults")
    ap.add_argument("--points", default="[]", help="JSON list of search keyword dicts")
    ap.add_argument("--json", default=None, help="also write the numbers here")
    ap.add_argument("--reuse", action="store_true", help="keep an index already built at --work")
    ap.add_argument("--mode", default="ssd", choices=["memory", "mmap", "ssd"])
    ap.add_argument("--config", default="{}",
                    help='JSON of IndexConfig fields to change, e.g. \'{"codec_iterations": 4}\'')
    args = ap.parse_args()

    import faiss
    from threadpoolctl import threadpool_limits

    import encoders
    from indexing import build_index
    from indexing._precomputed_docs import PrecomputedDocuments
    from indexing.corpus import load_beir
    from mvr import IndexConfig
    from serving import Searcher

    enc = encoders.load(args.vectors)
    data = load_beir(args.data, "test")
    qtable = enc.table("queries")
    qids = [i for i in data.qrels if i in set(qtable.ids)]
    q = enc.encode_queries(qids)
    t = time.perf_counter()
    if args.reuse and (Path(args.work) / "manifest.json").is_file():
        from mvr._manifest import read_manifest

        m = read_manifest(args.work)
    else:
        m = build_index(args.work, PrecomputedDocuments(enc), enc,
                        IndexConfig(**json.loads(args.config)), progress=False, overwrite=True)
    out: dict[str, Any] = {"build_s": time.perf_counter() - t,
                           "build_timings": m.get("build_timings"), "documents": m["counts"]["documents"],
                           "tokens": m["counts"]["tokens"], "config": m["config"], "points": []}
    with threadpool_limits(1), Searcher.open(args.work, mode=args.mode) as s:
        faiss.omp_set_num_threads(1)
        ex = s.exhaustive(q, k=10)
        out["ndcg10_exhaustive"] = ndcg10(data.qrels, qids, ex.ids, ex.scores)
        base = s.config
        for kw in [{}] + json.loads(args.points):
            s.config = base
            out["points"].append(measure(s, q, qids, data.qrels, ex, kw))
            print(json.dumps(out["points"][-1]), flush=True)
    print(f"\n{Path(args.data).name}: {len(qids)} queries, {out['documents']:,} documents, "
          f"{out['tokens']:,} pooled tokens; exhaustive nDCG@10 {out['ndcg10_exhaustive']:.4f}; "
          f"build {out['build_s']:.1f} s; config changes {args.config}\n")
    print("| setting | nDCG@10 | Recall@10 vs exhaustive | p50 ms | p95 ms |")
    print("|---|---|---|---|---|")
    for p in out["points"]:
        name = ", ".join(f"{k}={v}" for k, v in p.items() if k not in
                         ("ndcg10", "recall10_vs_exhaustive", "p50_ms", "p95_ms",
                          "stage_p50_ms")) or "defaults"
        print(f"| {name} | {p['ndcg10']:.4f} | {p['recall10_vs_exhaustive']:.4f} | "
              f"{p['p50_ms']:.1f} | {p['p95_ms']:.1f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
