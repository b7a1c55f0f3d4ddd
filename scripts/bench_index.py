"""Index build throughput and query latency (excluding the encoder).

Sections (each prints a markdown table):

* ``build``: documents/s of ``build_index`` from precomputed vectors (SciFact cached
  default-encoder vectors, pool_factor 1 and 2) and from generated vectors, with peak
  RSS of a 5k and a 50k build (each in a fresh subprocess).
* ``latency``: p50/p95 per query at batch 1 and batch 32 (query encoding excluded:
  queries are token vectors) on the 5k SciFact index and on 100k generated documents,
  for each first stage, against exhaustive MaxSim with mvr's kernel
  (``Searcher.exhaustive``), with Recall@10 against exhaustive.

Usage::

    python scripts/bench_index.py build [--vectors .cache/vectors/scifact]
    python scripts/bench_index.py latency [--docs 100000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------- generated data
class GeneratedDocs:
    """``n`` documents of ``tokens`` ± 50% unit vectors around topic centres (seeded);
    generated batch by batch so the corpus is never in memory."""

    def __init__(self, n: int, dim: int = 128, tokens: int = 32, seed: int = 0,
                 topics: int = 1000) -> None:
        self.n, self.dim, self.tokens, self.seed = n, dim, tokens, seed
        rng = np.random.default_rng(seed)
        c = rng.standard_normal((topics, dim)).astype(np.float32)
        self.centres = c / np.linalg.norm(c, axis=1, keepdims=True)

    def __len__(self) -> int:
        return self.n

    def block(self, lo: int, hi: int) -> list[tuple[str, np.ndarray]]:
        out = []
        for i in range(lo, hi):
            rng = np.random.default_rng([self.seed, i])  # document i is the same in any block
            t = int(rng.integers(self.tokens // 2, self.tokens * 3 // 2 + 1))
            topic = rng.integers(0, len(self.centres), size=t)
            home = rng.integers(0, len(self.centres))
            topic[: t // 2] = home  # documents have a main topic
            v = self.centres[topic] + 0.1 * rng.standard_normal((t, self.dim)).astype(np.float32)
            out.append((f"g{i}", v / np.linalg.norm(v, axis=1, keepdims=True)))
        return out

    def __iter__(self):  # type: ignore[no-untyped-def]
        for lo in range(0, self.n, 4096):
            yield from self.block(lo, min(lo + 4096, self.n))

    def queries(self, n: int, seed: int = 99) -> Any:
        from mvr import MultiVectors

        rng = np.random.default_rng(seed)
        out = []
        for _ in range(n):
            i = int(rng.integers(self.n))
            doc = self.block(i, i + 1)[0][1]  # a query resembles one document
            v = doc[rng.integers(0, len(doc), size=16)]
            v = v + 0.1 * rng.standard_normal(v.shape).astype(np.float32)
            out.append(v / np.linalg.norm(v, axis=1, keepdims=True))
        return MultiVectors.from_arrays(out)


def small_fde(dim: int) -> Any:
    from mvr import FDEConfig

    return FDEConfig(dim=dim, num_repetitions=20, num_simhash_projections=5, projection_dim=16,
                     final_projection_dim=2048)


# ---------------------------------------------------------------------- build
def _build_child(spec: dict[str, Any]) -> None:
    """Run one build in this (fresh) process and print JSON with docs/s and peak RSS."""
    from indexing import build_index
    from mvr import FDEConfig, IndexConfig, PoolingConfig

    if spec["source"] == "scifact":
        import encoders
        from indexing._precomputed_docs import PrecomputedDocuments

        enc = encoders.load(spec["vectors"])
        docs: Any = PrecomputedDocuments(enc, limit=spec.get("limit"))
        dim = enc.dim
    else:
        enc = None
        docs = GeneratedDocs(spec["n"], dim=spec["dim"], tokens=spec["tokens"])
        dim = spec["dim"]
    fde = FDEConfig(dim=dim, **spec.get("fde", {}))
    cfg = IndexConfig(fde=fde, pooling=PoolingConfig(pool_factor=spec["pool_factor"]),
                      batch_size=spec.get("batch_size", 256))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory(dir=spec.get("tmp")) as d:
        t, c = time.perf_counter(), time.process_time()
        m = build_index(d, docs, enc, cfg, progress=False)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"docs": m["counts"]["documents"], "tokens": m["counts"]["tokens"],
                      "wall": wall, "cpu": cpu, "timings": m["build_timings"], "peak_rss_mb": rss / 1024,
                      "rss_before_mb": rss0 / 1024}))


def _run_child(spec: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "_child", json.dumps(spec)],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_build(args: argparse.Namespace) -> None:
    specs = []
    for pf in () if args.skip_scifact else (1, 2):
        specs.append((f"SciFact precomputed (384-d), pool_factor {pf}",
                      {"source": "scifact", "vectors": args.vectors, "pool_factor": pf}))
    for n in (5000, 50000):
        specs.append((f"generated 128-d, ~32 tokens, {n} docs, pool_factor 1",
                      {"source": "generated", "n": n, "dim": 128, "tokens": 32,
                       "pool_factor": 1}))
    print("| corpus | documents | pooled tokens | docs/s (wall) | docs per CPU-s | pool s | "
          "FDE s | write+commit s | checksums s | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, spec in specs:
        r = _run_child(spec)
        t = r["timings"]
        print(f"| {name} | {r['docs']} | {r['tokens']} | {r['docs'] / r['wall']:.0f} | "
              f"{r['docs'] / r['cpu']:.0f} | {t['pool']:.1f} | {t['fde']:.1f} | "
              f"{t['write'] + t['commit']:.1f} | {t['checksums']:.1f} | "
              f"{r['peak_rss_mb']:.0f} |", flush=True)


# ---------------------------------------------------------------------- latency
def _latency(fn: Any, q: Any, batch: int, reps: int) -> tuple[float, float]:
    """p50 / p95 milliseconds per query of ``fn(queries)`` over ``reps`` calls."""
    times = []
    n = len(q)
    for r in range(reps):
        lo = (r * batch) % max(n - batch + 1, 1)
        sub = q[lo : lo + batch]
        t = time.perf_counter()
        fn(sub)
        times.append((time.perf_counter() - t) * 1000 / batch)
    return float(np.percentile(times, 50)), float(np.percentile(times, 95))


def _recall(a: list[list[str]], b: list[list[str]]) -> float:
    return float(np.mean([len(set(x) & set(y)) / len(y) for x, y in zip(a, b, strict=True)]))


def latency_table(name: str, paths: dict[str, Path], q: Any, n_cand: int, reps: int,
                  exhaustive_reps: int, recall_queries: int) -> None:
    from serving import Searcher

    ex_ids = None
    for kind, path in paths.items():
        with Searcher.open(path, verify=False) as s:
            s.search(q[:2], k=10, candidates=n_cand)  # warm up (numba, page cache)
            if ex_ids is None:
                ex_ids = s.exhaustive(q[:recall_queries], k=10).ids
                if exhaustive_reps:
                    for b in (1, 32):
                        p50, p95 = _latency(lambda x: s.exhaustive(x, k=10), q, b,
                                            max(1, exhaustive_reps // b))
                        print(f"| {name} | exhaustive MaxSim | - | {b} | {p50:.2f} | {p95:.2f} | "
                              "1.000 |", flush=True)
            rec = _recall(s.search(q[:recall_queries], k=10, candidates=n_cand).ids, ex_ids)
            for b in (1, 32):
                p50, p95 = _latency(lambda x: s.search(x, k=10, candidates=n_cand), q, b,
                                    max(3, reps // b) if b > 1 else reps)
                print(f"| {name} | mvr {kind} | {n_cand} | {b} | {p50:.2f} | {p95:.2f} | "
                      f"{rec:.3f} |", flush=True)


def bench_latency(args: argparse.Namespace) -> None:
    import encoders
    from indexing import build_index
    from mvr import FirstStageConfig, IndexConfig, PoolingConfig

    work = Path(args.work)
    print("| corpus | method | N | batch | p50 ms/query | p95 ms/query | Recall@10 vs exhaustive |")
    print("|---|---|---|---|---|---|---|")
    if not args.skip_scifact:
        enc = encoders.load(args.vectors)
        qt = enc.table("queries")
        q = qt.get(np.arange(min(len(qt), 300)))
        paths = {k: work / f"scifact-pf2-{k}" for k in args.kinds.split(",")
                 if (work / f"scifact-pf2-{k}" / "manifest.json").exists()}
        latency_table(f"SciFact {len(enc.table('documents'))}", paths, q, args.candidates,
                      args.reps, args.exhaustive_reps, len(q))
    if args.skip_generated:
        return
    gen = GeneratedDocs(args.docs, dim=128, tokens=32, seed=1)
    q = gen.queries(200)
    paths = {}
    for kind in args.kinds.split(","):
        path = work / f"generated-{args.docs}-{kind}"
        if not (path / "manifest.json").exists():
            fs = FirstStageConfig(kind=kind, hnsw_m=16, hnsw_ef_construction=40,
                                  hnsw_ef_search=args.candidates, train_size=10_000)
            cfg = IndexConfig(fde=small_fde(128), pooling=PoolingConfig(pool_factor=1),
                              first_stage=fs, batch_size=1024, store_text=False)
            t = time.perf_counter()
            build_index(path, gen, None, cfg, progress=False, overwrite=True)
            print(f"<!-- built {path} in {time.perf_counter() - t:.0f} s -->", flush=True)
        paths[kind] = path
    latency_table(f"generated {args.docs}", paths, q, args.candidates, args.reps,
                  args.exhaustive_reps, args.recall_queries)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "_child":
        _build_child(json.loads(sys.argv[2]))
        return
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["build", "latency"])
    ap.add_argument("--vectors", default=".cache/vectors/scifact")
    ap.add_argument("--work", default=".cache/indexes")
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--kinds", default="exact,hnsw,ivfpq")
    ap.add_argument("--candidates", type=int, default=200)
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--exhaustive-reps", type=int, default=10,
                    help="queries timed for exhaustive MaxSim at batch 1 (0: skip)")
    ap.add_argument("--recall-queries", type=int, default=20,
                    help="generated queries whose exhaustive top-10 gives the recall")
    ap.add_argument("--skip-scifact", action="store_true")
    ap.add_argument("--skip-generated", action="store_true")
    args = ap.parse_args()
    {"build": bench_build, "latency": bench_latency}[args.what](args)


if __name__ == "__main__":
    main()
