"""Scale benchmark: PyPI at growing sizes, default settings, build -> open -> search.

For each size N (first N documents of a precomputed PyPI table, see
``scripts/encode_stream.py``), in fresh subprocesses so that peak RSS is the stage's own:

* **build** from the cached token vectors (``indexing.build_index`` with
  ``(id, vectors)`` pairs at the default :class:`mvr.IndexConfig`): wall time, peak RSS,
  seconds per stage; the encoder's own docs/s is measured by ``encode_stream.py`` (and
  reported beside it), since the build from text = encoder + this;
* **bytes per document** on disk per file kind, and in RAM per part;
* **serve** (``mode="ssd"``): open time, RSS after open and after the queries, p50/p95
  ms per query at batch 1 and 32, with 1 and 2 threads, query encoding excluded;
  Recall@10 against exhaustive MaxSim over the pooled float16 vectors (computed once,
  cached in ``OUT/exhaustive-N.npy``).

::

    .venv/bin/python scripts/bench_scale.py --vectors .cache/vectors/pypi --sizes 50000 200000 \
        --queries 500 --out runs/scale

Prints a markdown table and writes ``OUT/scale.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _docs(vectors: Path, n: int):
    import encoders

    table = encoders._precomputed.PrecomputedTable(vectors / "documents")
    ids = np.load(vectors / "documents" / "ids.npy", mmap_mode="r")
    for lo in range(0, n, 4096):
        rows = np.arange(lo, min(lo + 4096, n))
        mv = table.get(rows)
        for i, r in enumerate(rows.tolist()):
            yield str(ids[r]), np.asarray(mv[i], dtype=np.float32)


def child_build(vectors: Path, n: int, out: Path, config: str = "{}") -> dict:
    import indexing
    import mvr

    cfg = mvr.IndexConfig.from_dict(json.loads(config)) if json.loads(config) else None
    t = time.perf_counter()
    m = indexing.build_index(out, _docs(vectors, n), config=cfg, progress=False, overwrite=True)
    wall = time.perf_counter() - t
    return {"build_s": wall, "docs_per_s": n / wall, "timings": m["build_timings"],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


SEARCH_FIELDS = ("default_candidates", "default_rerank", "centroid_candidates", "centroid_nprobe",
                 "candidate_tokens",
                 "token_candidates", "token_nprobe", "token_kprime")


def child_serve(index: Path, vectors: Path, nq: int, threads: int, ref_path: Path,
                serve_config: str = "{}") -> dict:
    """``serve_config``: search-time IndexConfig fields (SEARCH_FIELDS) replacing those the
    index recorded at build, e.g. the current defaults for an index built before them."""
    import dataclasses

    from threadpoolctl import threadpool_limits

    import encoders
    import serving

    _, queries, _, _ = encoders.read_precomputed(vectors / "queries.zarr")
    queries = queries[:nq].astype(np.float32)
    base = _rss_mb()
    t = time.perf_counter()
    s = serving.Searcher.open(index, mode="ssd")
    open_s = time.perf_counter() - t
    rss_open = _rss_mb()
    over = json.loads(serve_config)
    bad = sorted(set(over) - set(SEARCH_FIELDS))
    if bad:
        raise SystemExit(f"--serve-config: expected fields among {SEARCH_FIELDS}, got {bad}")
    s.config = dataclasses.replace(s.config, **over)
    out = {"open_s": open_s, "rss_open_mb": rss_open, "rss_base_mb": base, "threads": threads,
           "search_config": {k: getattr(s.config, k) for k in SEARCH_FIELDS}}
    with threadpool_limits(threads):
        import faiss

        faiss.omp_set_num_threads(threads)
        s.search(queries[:4], k=10)  # warm-up (numba, faiss)
        for batch in (1, 32):
            lat, ids, stages = [], [], {}
            for lo in range(0, len(queries), batch):
                t0 = time.perf_counter()
                r = s.search(queries[lo : lo + batch], k=10)
                lat.append((time.perf_counter() - t0) / min(batch, len(queries) - lo))
                ids += r.ids
                for key, v in r.timings.items():
                    stages.setdefault(key, []).append(v)
            out[f"b{batch}_stage_p50_ms"] = {k: 1e3 * float(np.median(v)) for k, v in stages.items()}
            out[f"b{batch}"] = {"p50_ms": 1e3 * float(np.percentile(lat, 50)),
                                "p95_ms": 1e3 * float(np.percentile(lat, 95))}
            if batch == 1:
                ref = np.load(ref_path)
                row = {d: i for i, d in enumerate(s.ids)}
                got = [[row[d] for d in q] for q in ids]
                out["recall10_vs_exhaustive"] = float(np.mean(
                    [len(set(g) & set(ref[i].tolist())) / 10 for i, g in enumerate(got)]))
    out["rss_after_mb"] = _rss_mb()
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["stats_first_stage"] = s.stats()["first_stage"]
    parts = {"first_stage": sum(int(getattr(p, "nbytes", 0)) for _, p in s.first_stage.parts),
             "centroid_ids": 0 if s._cids is None else s._cids.nbytes,
             "approx_codes": 0 if s._acodes is None else s._acodes.nbytes,
             "centroid_lists": 0 if s._lists is None else sum(a.nbytes for a in s._lists),
             "token_lists": 0 if getattr(s, "_tokens", None) is None else s._tokens.nbytes,
             "lengths_offsets": s._lengths.nbytes + (0 if s._tok_starts is None else s._tok_starts.nbytes),
             "cache_budget": getattr(getattr(s.store, "cache", None), "capacity_bytes", 0)}
    out["ram_bytes_per_doc"] = {k: int(v) / len(s.ids) for k, v in parts.items()}
    s.close()
    return out


def _recall(s, ids: list[list[str]], ref: np.ndarray) -> float:
    row = {d: i for i, d in enumerate(s.ids)}
    return float(np.mean([len({row[d] for d in g} & set(ref[i].tolist())) / 10
                          for i, g in enumerate(ids)]))


def child_sweep(index: Path, vectors: Path, nq: int, ref_path: Path, points: str) -> dict:
    """Recall@10 vs exhaustive and p50/p95 (batch 1, one thread) at each operating point:
    a JSON list of {candidates, rerank_candidates, centroid_candidates, centroid_nprobe}
    (search-time settings; the last two replace the index config's for the run)."""
    import dataclasses

    from threadpoolctl import threadpool_limits

    import encoders
    import serving

    _, queries, _, _ = encoders.read_precomputed(vectors / "queries.zarr")
    queries = queries[:nq].astype(np.float32)
    ref = np.load(ref_path)
    s = serving.Searcher.open(index, mode="ssd")
    base_cfg = s.config
    out = []
    with threadpool_limits(1):
        import faiss

        faiss.omp_set_num_threads(1)
        for pt in json.loads(points):
            pt = dict(pt)
            cfg = {k: pt.pop(k) for k in SEARCH_FIELDS[2:] if k in pt}
            s.config = dataclasses.replace(base_cfg, **cfg)
            s.search(queries[:4], k=10, **pt)
            lat, ids, stages = [], [], {}
            for i in range(len(queries)):
                t0 = time.perf_counter()
                r = s.search(queries[i : i + 1], k=10, **pt)
                lat.append(time.perf_counter() - t0)
                ids += r.ids
                for k, v in r.timings.items():
                    stages.setdefault(k, []).append(v)
            out.append({**cfg, **pt, "p50_ms": 1e3 * float(np.percentile(lat, 50)),
                        "p95_ms": 1e3 * float(np.percentile(lat, 95)),
                        "recall10_vs_exhaustive": _recall(s, ids, ref),
                        "stage_p50_ms": {k: 1e3 * float(np.median(v)) for k, v in stages.items()}})
            print(json.dumps(out[-1]), file=sys.stderr, flush=True)
    s.close()
    return {"points": out}


def child_query_encoding(dataset: Path, nq: int) -> dict:
    """The default encoder's latency per query text (batch 1, one thread and two)."""
    import torch

    import encoders

    texts = [json.loads(line)["text"] for line in (dataset / "queries.jsonl").open()][:nq]
    enc = encoders.load("default", progress=False)
    out = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        enc.encode_queries(texts[:4])
        lat = []
        for t in texts:
            t0 = time.perf_counter()
            enc.encode_queries([t])
            lat.append(time.perf_counter() - t0)
        out[f"t{threads}"] = {"p50_ms": 1e3 * float(np.percentile(lat, 50)),
                              "p95_ms": 1e3 * float(np.percentile(lat, 95))}
    return out


def child_exhaustive(vectors: Path, n: int, nq: int, out: Path) -> dict:
    """Exact MaxSim of every query against every pooled float16 document: one float32
    GEMM per block of documents (all queries' tokens x the block's tokens), a segment
    max per document and a sum per query; the top 10 rows and scores are kept."""
    import encoders
    from indexing import pool_tokens

    t = time.perf_counter()
    _, queries, _, _ = encoders.read_precomputed(vectors / "queries.zarr")
    q = queries[:nq]
    qv = np.ascontiguousarray(q.vectors, dtype=np.float32)
    qo = np.asarray(q.offsets)
    table = encoders._precomputed.PrecomputedTable(vectors / "documents")
    best = np.full((len(q), 0), -np.inf, np.float32)
    rows = np.zeros((len(q), 0), np.int64)
    for lo in range(0, n, 16384):
        d = pool_tokens(table.get(np.arange(lo, min(lo + 16384, n))).astype(np.float32),
                        pool_factor=2)
        dv = np.asarray(d.vectors, dtype=np.float16).astype(np.float32)
        m = np.maximum.reduceat(qv @ dv.T, np.asarray(d.offsets)[:-1], axis=1)
        sc = np.add.reduceat(m, qo[:-1], axis=0)
        best = np.concatenate([best, sc], 1)
        rows = np.concatenate([rows, np.broadcast_to(np.arange(lo, lo + sc.shape[1]), sc.shape)], 1)
        keep = np.argsort(-best, axis=1, kind="stable")[:, :10]
        best, rows = np.take_along_axis(best, keep, 1), np.take_along_axis(rows, keep, 1)
    np.save(out, rows)
    np.save(out.with_name(out.stem + "-scores.npy"), best)
    return {"exhaustive": str(out), "seconds": time.perf_counter() - t}


def disk_bytes(index: Path) -> dict:
    m = json.loads((index / "manifest.json").read_text())
    n = m["counts"]["documents"]
    kinds: dict[str, int] = {}
    for rel, e in m["files"].items():
        name = Path(rel).name
        key = name.split("-")[0] if rel.count("/") == 0 else (
            rel.split("/")[2] if rel.count("/") >= 3 else name)
        kinds[key] = kinds.get(key, 0) + int(e["size"])
    total = sum(kinds.values())
    return {"documents": n, "tokens": m["counts"]["tokens"], "total_bytes": total,
            "bytes_per_doc": {k: v / n for k, v in sorted(kinds.items())},
            "total_per_doc": total / n}


def run_child(*argv: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, __file__, "--child", *argv], capture_output=True,
                       text=True, env=env)
    if p.returncode != 0:
        return {"error": p.stderr[-2000:]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vectors", type=Path, default=ROOT / ".cache/vectors/pypi")
    ap.add_argument("--sizes", type=int, nargs="+", default=[50_000, 200_000, 701_912])
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--out", type=Path, default=ROOT / "runs/scale")
    ap.add_argument("--child", nargs="+", default=None)
    ap.add_argument("--config", default="{}",
                    help="IndexConfig fields as JSON (default: the defaults)")
    ap.add_argument("--reuse", action="store_true",
                    help="keep an index already built at OUT/pypi-N.mvr")
    ap.add_argument("--sweep", default=None,
                    help="JSON list of search operating points, measured after the defaults")
    ap.add_argument("--serve-config", default="{}",
                    help="search-time config fields (default_rerank, ...) as JSON, replacing "
                         "those the index recorded (for an index built before a default changed)")
    ap.add_argument("--no-query-encoding", action="store_true",
                    help="skip the query-encoding latency child")
    ap.add_argument("--dataset", type=Path, default=Path("/work/shared/data/pypi"),
                    help="for the query encoding latency (reported separately)")
    args = ap.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "build":
            res = child_build(Path(rest[0]), int(rest[1]), Path(rest[2]), *rest[3:])
        elif kind == "sweep":
            res = child_sweep(Path(rest[0]), Path(rest[1]), int(rest[2]), Path(rest[3]), rest[4])
        elif kind == "query_encoding":
            res = child_query_encoding(Path(rest[0]), int(rest[1]))
        elif kind == "serve":
            res = child_serve(Path(rest[0]), Path(rest[1]), int(rest[2]), int(rest[3]), Path(rest[4]),
                              *rest[5:])
        else:
            res = child_exhaustive(Path(rest[0]), int(rest[1]), int(rest[2]), Path(rest[3]))
        print(json.dumps(res))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    qenc = {} if args.no_query_encoding else run_child("query_encoding", str(args.dataset), "200")
    print(json.dumps({"query_encoding": qenc}), flush=True)
    for n in args.sizes:
        index = args.out / f"pypi-{n}.mvr"
        ref = args.out / f"exhaustive-{n}-{args.queries}.npy"
        row: dict = {"n": n}
        if not ref.is_file():
            row["exhaustive"] = run_child("exhaustive", str(args.vectors), str(n), str(args.queries), str(ref))
        if args.reuse and (index / "manifest.json").is_file():
            row["build"] = {"reused": True}
        else:
            row["build"] = run_child("build", str(args.vectors), str(n), str(index), args.config)
        if "error" in row["build"]:
            rows.append(row)
            print(json.dumps(row), flush=True)
            continue
        row["disk"] = disk_bytes(index)
        for threads in (1, 2):
            row[f"serve_t{threads}"] = run_child("serve", str(index), str(args.vectors),
                                                  str(args.queries), str(threads), str(ref),
                                                  args.serve_config)
        if args.sweep:
            row["sweep"] = run_child("sweep", str(index), str(args.vectors), str(args.queries),
                                     str(ref), args.sweep)
        row["query_encoding"] = qenc
        rows.append(row)
        print(json.dumps(row), flush=True)
        (args.out / "scale.json").write_text(json.dumps(rows, indent=1))
    print("| docs | build s | build peak RSS MB | disk B/doc | open s | serve RSS MB | "
          "p50 b1 t1 ms | p95 b1 t1 | p50 b32 t1 | p50 b1 t2 | Recall@10 vs exh |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        b, s1, s2 = r.get("build", {}), r.get("serve_t1", {}), r.get("serve_t2", {})
        if "reused" in b:
            b = {"build_s": float("nan"), "peak_rss_mb": float("nan")}
        if "error" in b or "error" in s1:
            print(f"| {r['n']} | error: {(b.get('error') or s1.get('error'))[-200:]!r} |")
            continue
        print(f"| {r['n']:,} | {b['build_s']:.0f} | {b['peak_rss_mb']:.0f} | "
              f"{r['disk']['total_per_doc']:.0f} | {s1['open_s']:.2f} | {s1['peak_rss_mb']:.0f} | "
              f"{s1['b1']['p50_ms']:.2f} | {s1['b1']['p95_ms']:.2f} | {s1['b32']['p50_ms']:.2f} | "
              f"{s2.get('b1', {}).get('p50_ms', float('nan')):.2f} | "
              f"{s1['recall10_vs_exhaustive']:.3f} |")


if __name__ == "__main__":
    main()
