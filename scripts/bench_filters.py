"""Filtered search: Recall@k against exhaustive MaxSim within the filter, per selectivity.

Builds (once) an index of a dataset's precomputed vectors whose documents carry a
synthetic ``bucket`` field (uniform random in [0, 1000), seeded), then for each
selectivity s searches with ``{"field": "bucket", "lt": s * 1000}`` and compares the
top-k with the exact MaxSim top-k over the documents the filter keeps. With
``--timing`` it also reports p50 / p95 latency per query (batch 1, one thread): only
meaningful on a quiet machine.

    python scripts/bench_filters.py .cache/vectors/scifact --index /tmp/scifact-bucket.mvr
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _documents(enc, seed: int):
    from indexing._precomputed_docs import PrecomputedDocuments

    rng = np.random.default_rng(seed)
    for doc_id, text, vectors in PrecomputedDocuments(enc):
        yield {"id": doc_id, "text": text, "vectors": vectors,
               "metadata": {"bucket": int(rng.integers(0, 1000))}}


def _build(vectors: Path, index: Path, seed: int) -> None:
    import encoders
    import indexing

    enc = encoders.load(str(vectors))
    indexing.build_index(index, _documents(enc, seed), enc, progress=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("vectors", type=Path, help="precomputed documents + queries (scripts/encode_corpus.py)")
    ap.add_argument("--index", type=Path, default=None,
                    help="index to build (with a bucket field) or reuse (without one, the same "
                         "random buckets are applied as an ids allow-list)")
    ap.add_argument("--selectivities", default="0.5,0.1,0.01,0.001")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--candidates", type=int, default=None, help="first-stage N (index default)")
    ap.add_argument("--timing", action="store_true", help="p50/p95 per query (quiet machine only)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import encoders
    from serving import Searcher
    from serving._filtered_search import allowed_rows, filtered_path

    index = args.index or Path("/tmp") / f"{args.vectors.name}-bucket.mvr"
    if not (index / "manifest.json").is_file():
        _build(args.vectors, index, args.seed)
    enc = encoders.load(str(args.vectors))
    qtable = enc.table("queries")
    n_q = min(args.queries, len(qtable))
    queries = qtable.get(np.arange(n_q))
    rows_out = []
    with Searcher.open(index, encoder=enc) as s:
        n = s.config.default_candidates if args.candidates is None else args.candidates
        from serving._metadata import index_metadata

        has_field = "bucket" in index_metadata(s).field_types()
        buckets = np.random.default_rng(args.seed).integers(0, 1000, size=len(s.ids))
        base = s.search(queries, k=args.k, candidates=n)  # the unfiltered reference point
        ex = s.exhaustive(queries, k=args.k)
        rows_out.append({"selectivity": "none (unfiltered)", "allowed": s.num_documents,
                         "path": "first_stage", "recall": float(np.mean(
                             [len(set(a) & set(b)) / max(len(b), 1)
                              for a, b in zip(base.ids, ex.ids, strict=True)]))})
        print(rows_out[-1], flush=True)
        for sel in [float(x) for x in args.selectivities.split(",")]:
            if has_field:
                flt: dict = {"field": "bucket", "lt": sel * 1000}
            else:  # an index built elsewhere: the same random buckets, as an id allow-list
                flt = {"ids": [s.ids[r] for r in np.flatnonzero(buckets < sel * 1000)]}
            keep = allowed_rows(s, flt)
            allowed = np.flatnonzero(keep)
            exact = s._rerank_rows(queries, np.broadcast_to(allowed, (n_q, len(allowed))), args.k, {})
            got = s.search(queries, k=args.k, candidates=n, filter=flt)
            recall = np.mean([len(set(a) & set(b)) / max(len(b), 1)
                              for a, b in zip(got.ids, exact.ids, strict=True)])
            path, _ = filtered_path(s, len(allowed), args.k, n)
            row = {"selectivity": sel, "allowed": len(allowed), "path": path, "recall": float(recall)}
            if args.timing:
                times = []
                for i in range(n_q):
                    t = time.perf_counter()
                    s.search(queries[i : i + 1], k=args.k, candidates=n, filter=flt)
                    times.append(time.perf_counter() - t)
                row["p50_ms"] = 1e3 * float(np.percentile(times, 50))
                row["p95_ms"] = 1e3 * float(np.percentile(times, 95))
            rows_out.append(row)
            print(row, flush=True)
    from serving.evaluation._report import markdown_table

    cols = ["selectivity", "allowed", "path", "recall"] + (["p50_ms", "p95_ms"] if args.timing else [])
    print(f"\n{index}: {len(s.ids)} documents, {n_q} queries, k={args.k}, N={n}")
    print(markdown_table([c.replace("recall", f"Recall@{args.k} vs exhaustive-in-filter") for c in cols],
                         [[r[c] for c in cols] for r in rows_out]))


if __name__ == "__main__":
    main()
