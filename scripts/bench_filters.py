"""Filtered search: Recall@k against exhaustive MaxSim within the filter, per selectivity.

Builds (once) an index of a dataset's precomputed vectors whose documents carry a
synthetic ``bucket`` field (uniform random in [0, 1000), seeded), then for each
selectivity s searches with ``{"field": "bucket", "lt": s * 1000}`` and compares the
top-k with the exact MaxSim top-k over the documents the filter keeps. An index built
elsewhere without the field (PyPI at scale) gets the same random buckets as an ``ids``
allow-list, which keeps the same rows.

The reference is exact MaxSim of each query against every allowed document, over the
index's stored vectors (one block of documents fetched once for all queries). It costs
queries x allowed documents, so at a broad filter it runs on fewer queries: at most
``--ref-pairs`` query-document pairs per selectivity (the ``queries`` column says how
many). With ``--ref-cache DIR`` each reference is computed once and kept there.

With ``--timing`` it also reports p50 / p95 latency per query (batch 1, one thread), the
p50 of the filter's own evaluation (for an ``ids`` list: parsing it and looking up every
id) and the p50 of the rest (the search itself): only meaningful on a quiet machine.

    python scripts/bench_filters.py .cache/vectors/scifact --index /tmp/scifact-bucket.mvr
    python scripts/bench_filters.py .cache/vectors/pypi --index runs/scale700b/pypi-701912.mvr \\
        --mode ssd --queries 500 --exhaustive runs/scale700b/exhaustive-701912-500.npy \\
        --ref-cache runs/filters-pypi --serve-config '{"default_rerank": 50}' --timing
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SEARCH_FIELDS = ("default_candidates", "default_rerank", "centroid_candidates", "centroid_nprobe")


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


def exact_top_k(s, q, rows: np.ndarray, k: int, block: int = 8192) -> np.ndarray:
    """Rows of the exact MaxSim top-``k`` of each query among ``rows`` (shape (n_q, k),
    -1 pads), over the searcher's stored vectors: each block of rows fetched once."""
    from tqdm import tqdm

    from mvr._maxsim import maxsim
    from serving._first_stage import top_n

    best_s = np.full((len(q), 0), -np.inf, dtype=np.float32)
    best_r = np.zeros((len(q), 0), dtype=np.int64)
    for lo in tqdm(range(0, len(rows), block), desc=f"exact over {len(rows)} docs", leave=False):
        part = rows[lo : lo + block]
        sc = np.asarray(maxsim(q, s._fetch(part)), dtype=np.float32)
        best_s, best_r = top_n(np.concatenate([best_s, sc], axis=1), k,
                               np.concatenate([best_r, np.broadcast_to(part, sc.shape)], axis=1))
    return best_r


def _reference(s, q, rows: np.ndarray, k: int, cache: Path | None, name: str) -> np.ndarray:
    path = None if cache is None else cache / f"{name}.npy"
    if path is not None and path.is_file():
        ref = np.load(path)
        if ref.shape == (len(q), k):
            return ref
    ref = exact_top_k(s, q, rows, k)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, ref)
    return ref


def _recall(s, ids: list[list[str]], ref: np.ndarray) -> float:
    row = s._id_to_row
    return float(np.mean([len({row[d] for d in got} & set(r[r >= 0].tolist())) / max(int((r >= 0).sum()), 1)
                          for got, r in zip(ids, ref, strict=True)]))


def _latency(s, queries, k: int, n: int, flt, n_q: int) -> dict:
    """Batch-1 latency of ``n_q`` queries, one thread (the caller limits the threads)."""
    lat, filt = [], []
    s.search(queries[:2], k=k, candidates=n, filter=flt)  # warm-up
    for i in range(n_q):
        t = time.perf_counter()
        r = s.search(queries[i : i + 1], k=k, candidates=n, filter=flt)
        lat.append(time.perf_counter() - t)
        filt.append(r.timings.get("filter", 0.0))
    rest = np.subtract(lat, filt)
    return {"p50_ms": 1e3 * float(np.percentile(lat, 50)), "p95_ms": 1e3 * float(np.percentile(lat, 95)),
            "filter_p50_ms": 1e3 * float(np.percentile(filt, 50)),
            "search_p50_ms": 1e3 * float(np.percentile(rest, 50))}


def _queries(args, enc):
    import encoders

    qpath = args.vectors / "queries.zarr"
    if qpath.exists():
        _, q, _, _ = encoders.read_precomputed(qpath)
    else:
        q = enc.table("queries").all()
    return q[: min(args.queries, len(q))]


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("vectors", type=Path, help="precomputed documents + queries (scripts/encode_corpus.py)")
    ap.add_argument("--index", type=Path, default=None,
                    help="index to build (with a bucket field) or reuse (without one, the same "
                         "random buckets are applied as an ids allow-list)")
    ap.add_argument("--mode", default="memory", choices=("memory", "mmap", "ssd"))
    ap.add_argument("--selectivities", default="0.5,0.1,0.01,0.001")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--ref-pairs", type=float, default=5e7,
                    help="at most this many query x allowed-document pairs per exact reference")
    ap.add_argument("--ref-cache", type=Path, default=None, help="folder keeping the references")
    ap.add_argument("--exhaustive", type=Path, default=None,
                    help="cached exhaustive top-k rows over every document (.npy, one row per "
                         "query) for the unfiltered row, instead of computing it")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--candidates", type=int, default=None, help="first-stage N (index default)")
    ap.add_argument("--serve-config", default="{}",
                    help=f"JSON: search-time config fields among {SEARCH_FIELDS} replacing the index's")
    ap.add_argument("--timing", action="store_true", help="p50/p95 per query (quiet machine only)")
    ap.add_argument("--timing-queries", type=int, default=200)
    ap.add_argument("--json", type=Path, default=None, help="write the rows here")
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args()


def main() -> None:
    args = _args()
    import encoders
    from serving import Searcher
    from serving._filtered_search import allowed_rows, filtered_path
    from serving._metadata import index_metadata

    index = args.index or Path("/tmp") / f"{args.vectors.name}-bucket.mvr"
    if not (index / "manifest.json").is_file():
        _build(args.vectors, index, args.seed)
    enc = encoders.load(str(args.vectors))
    queries = _queries(args, enc)
    n_q = len(queries)
    over = json.loads(args.serve_config)
    bad = sorted(set(over) - set(SEARCH_FIELDS))
    if bad:
        raise SystemExit(f"--serve-config: expected fields among {SEARCH_FIELDS}, got {bad}")
    rows_out = []
    from threadpoolctl import threadpool_limits

    with Searcher.open(index, encoder=enc, mode=args.mode) as s:
        s.config = dataclasses.replace(s.config, **over)
        n = s.config.default_candidates if args.candidates is None else args.candidates
        has_field = "bucket" in index_metadata(s).field_types()
        buckets = np.random.default_rng(args.seed).integers(0, 1000, size=len(s.ids))
        tag = f"{s.num_documents}-seed{args.seed}-k{args.k}"
        if args.exhaustive is not None:
            ex = np.load(args.exhaustive)[:n_q, : args.k]
        else:
            ex = _reference(s, queries, s._live_rows, args.k, args.ref_cache, f"all-{tag}-q{n_q}")
        base = s.search(queries, k=args.k, candidates=n)  # the unfiltered reference point
        row = {"selectivity": "none (unfiltered)", "allowed": s.num_documents, "queries": n_q,
               "path": "first_stage", "recall": _recall(s, base.ids, ex)}
        sels: list[tuple[object, object]] = [(row, None)]
        rows_out.append(row)
        print(row, flush=True)
        for sel in [float(x) for x in args.selectivities.split(",")]:
            if has_field:
                flt: dict = {"field": "bucket", "lt": sel * 1000}
            else:  # an index built elsewhere: the same random buckets, as an id allow-list
                flt = {"ids": [s.ids[r] for r in np.flatnonzero(buckets < sel * 1000)]}
            allowed = np.flatnonzero(allowed_rows(s, flt))
            m = int(min(n_q, max(1, args.ref_pairs // max(len(allowed), 1))))
            q = queries[:m]
            ref = _reference(s, q, allowed, args.k, args.ref_cache, f"sel{sel:g}-{tag}-q{m}")
            got = s.search(q, k=args.k, candidates=n, filter=flt)
            path, _ = filtered_path(s, len(allowed), args.k, n)
            row = {"selectivity": sel, "allowed": len(allowed), "queries": m, "path": path,
                   "recall": _recall(s, got.ids, ref)}
            rows_out.append(row)
            sels.append((row, flt))
            print(row, flush=True)
        if args.timing:
            import faiss

            faiss.omp_set_num_threads(1)
            with threadpool_limits(1):
                for row, flt in sels:
                    row.update(_latency(s, queries, args.k, n, flt, min(args.timing_queries, n_q)))
                    print(row, flush=True)
    from serving.evaluation._report import markdown_table

    cols = ["selectivity", "allowed", "queries", "path", "recall"]
    cols += ["p50_ms", "p95_ms", "filter_p50_ms", "search_p50_ms"] if args.timing else []
    print(f"\n{index}: {len(s.ids)} documents, {n_q} queries, k={args.k}, N={n}, "
          f"config {({f: getattr(s.config, f) for f in SEARCH_FIELDS})}")
    print(markdown_table([c.replace("recall", f"Recall@{args.k} vs exhaustive-in-filter") for c in cols],
                         [[r.get(c) for c in cols] for r in rows_out]))
    if args.json is not None:
        args.json.write_text(json.dumps(rows_out, indent=1))


if __name__ == "__main__":
    main()
