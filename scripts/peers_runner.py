"""Build and serve one engine on exchanged token vectors (the child of ``bench_peers.py``).

Runs in the peers' venv (``.venv-peers``: torch 2.11.0, fast-plaid, xtr-warp-rs) and
never imports mvr: ``bench_peers.py`` writes the pooled document token vectors and the
query token vectors as ``.npy`` files into an exchange directory, starts this script
with ``.venv-peers/bin/python`` (threads fixed through the environment), and reads back
one JSON result. ``bench_peers.py`` also imports the engine-agnostic harness below
(:func:`serve`, :func:`build`, :func:`peak_rss_mb`) for its own mvr child, so every
engine is timed by the same loop.

Exchange directory (written by ``bench_peers.py``)::

    docs_vectors.npy   (total_doc_tokens, dim) float16, document after document
    docs_offsets.npy   (n_docs + 1,) int64
    queries_vectors.npy (total_query_tokens, dim) float16 or float32
    queries_offsets.npy (n_queries + 1,) int64

Usage (by ``bench_peers.py``; shown for debugging)::

    RAYON_NUM_THREADS=1 OMP_NUM_THREADS=1 .venv-peers/bin/python scripts/peers_runner.py \
        serve --engine fast-plaid --exchange DIR --index DIR/fast-plaid --threads 1 \
        --batches 1,32 --out result.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

K = 10


# ---------------------------------------------------------------------- harness
def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (``VmHWM``, else ``ru_maxrss``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def dir_bytes(path: str | Path) -> dict[str, int]:
    """Apparent bytes (sum of file sizes) and allocated bytes of every file under ``path``."""
    apparent = allocated = files = 0
    for root, _, names in os.walk(path):
        for name in names:
            st = os.stat(os.path.join(root, name))
            apparent += st.st_size
            allocated += st.st_blocks * 512
            files += 1
    return {"bytes": apparent, "allocated_bytes": allocated, "files": files}


def load_ragged(exchange: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(vectors, offsets)`` of ``name`` in the exchange directory (vectors memory-mapped).

    Shape: vectors (total_tokens, dim), offsets (n + 1,).
    """
    vectors = np.load(exchange / f"{name}_vectors.npy", mmap_mode="r")
    offsets = np.load(exchange / f"{name}_offsets.npy")
    return vectors, offsets


def split(vectors: np.ndarray, offsets: np.ndarray, lo: int = 0, hi: int | None = None,
          dtype: Any = np.float32) -> list[np.ndarray]:
    """Items ``lo:hi`` as a list of ``(t_i, dim)`` arrays of ``dtype`` (copies)."""
    hi = len(offsets) - 1 if hi is None else hi
    block = np.asarray(vectors[offsets[lo] : offsets[hi]], dtype=dtype)
    base = offsets[lo]
    return [block[offsets[i] - base : offsets[i + 1] - base] for i in range(lo, hi)]


def batches_of(n: int, batch: int, min_calls: int) -> list[tuple[int, int]]:
    """Consecutive ``(lo, hi)`` slices of ``batch`` queries over ``n`` queries, cycled until
    there are at least ``min_calls`` slices (the last slice of a pass may be shorter)."""
    one_pass = [(lo, min(lo + batch, n)) for lo in range(0, n, batch)]
    out = list(one_pass)
    while len(out) < min_calls:
        out.extend(one_pass)
    return out


class Engine:
    """What the harness needs from an engine. Subclasses hold the engine's own objects."""

    name = "?"

    def build(self, index: Path, exchange: Path, threads: int) -> dict[str, Any]:
        """Build the index at ``index`` from the exchanged documents; return its settings."""
        raise NotImplementedError

    def open(self, index: Path, exchange: Path, threads: int) -> dict[str, Any]:
        """Load the index for search; return what was loaded (settings, sizes)."""
        raise NotImplementedError

    def points(self, n_docs: int, query_tokens: int) -> list[dict[str, Any]]:
        """Operating points: keyword arguments of :meth:`search`, cheapest first."""
        raise NotImplementedError

    def prepare(self, queries: list[np.ndarray]) -> Any:
        """One batch of queries in the engine's own input type (not timed)."""
        raise NotImplementedError

    def search(self, batch: Any, k: int, point: dict[str, Any]) -> list[list[int]]:
        """Top-``k`` document rows (positions in the exchanged order) per query."""
        raise NotImplementedError


def _timed(engine: Engine, prepared: list[Any], sizes: list[int], point: dict[str, Any],
           ) -> tuple[list[float], list[list[int]]]:
    """Milliseconds per query of each call, and the rows each query got."""
    per_query, rows = [], []
    for batch, size in zip(prepared, sizes, strict=True):
        t = time.perf_counter()
        got = engine.search(batch, K, point)
        per_query.append((time.perf_counter() - t) * 1000 / size)
        rows.extend(got)
    return per_query, rows


def serve(engine: Engine, index: Path, exchange: Path, threads: int, batches: Sequence[int],
          min_calls: int = 10) -> dict[str, Any]:
    """Open ``index`` and time every operating point at every batch size.

    Batch 1 runs every query once in order (its rows give the recall); batch ``b`` runs
    consecutive slices of ``b`` queries, cycled to at least ``min_calls`` calls. One
    untimed call per (point, batch) warms caches and lazy loads first.
    """
    qv, qo = load_ragged(exchange, "queries")
    queries = split(qv, qo)
    n_docs = len(np.load(exchange / "docs_offsets.npy")) - 1
    t = time.perf_counter()
    opened = engine.open(index, exchange, threads)
    open_s = time.perf_counter() - t
    median_tokens = int(np.median(np.diff(qo)))
    results = []
    for point in engine.points(n_docs, median_tokens):
        print(f"{engine.name} {threads} thread(s): {point}", file=sys.stderr, flush=True)
        entry: dict[str, Any] = {"params": point, "batches": {}}
        try:
            for b in batches:
                slices = batches_of(len(queries), b, 1 if b == 1 else min_calls)
                prepared = [engine.prepare(queries[lo:hi]) for lo, hi in slices]
                engine.search(prepared[0], K, point)  # warm-up, not timed
                ms, rows = _timed(engine, prepared, [hi - lo for lo, hi in slices], point)
                entry["batches"][str(b)] = {
                    "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
                    "mean_ms": float(np.mean(ms)), "calls": len(ms),
                    "rows": [[int(r) for r in x] for x in rows[: len(queries)]],
                }
        except Exception as e:  # a point the engine refuses is a measured result
            entry["error"] = f"{type(e).__name__}: {e}"
        results.append(entry)
    return {"engine": engine.name, "threads": threads, "open_s": open_s, "opened": opened,
            "points": results, "peak_rss_mb": peak_rss_mb()}


def build(engine: Engine, index: Path, exchange: Path, threads: int) -> dict[str, Any]:
    """Build the index, timed; its size on disk and this process's peak RSS."""
    t, c = time.perf_counter(), time.process_time()
    settings = engine.build(index, exchange, threads)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    return {"engine": engine.name, "threads": threads, "build_s": wall, "build_cpu_s": cpu,
            "settings": settings, **dir_bytes(index), "peak_rss_mb": peak_rss_mb()}


# ---------------------------------------------------------------------- peers
def _torch(threads: int) -> Any:
    import torch

    torch.set_num_threads(threads)
    return torch


def _doc_tensors(exchange: Path, torch: Any) -> list[Any]:
    """Every document as a float32 torch tensor (t_i, dim): what both peers take."""
    dv, do = load_ragged(exchange, "docs")
    out = []
    for lo in range(0, len(do) - 1, 8192):
        out.extend(torch.from_numpy(a) for a in split(dv, do, lo, min(lo + 8192, len(do) - 1)))
    return out


class FastPlaidEngine(Engine):
    """fast-plaid (PyLate's PLAID engine): ``FastPlaid(index, device="cpu")``, ``create``
    at its defaults (nbits 4, 4 k-means iterations), ``search(n_ivf_probe, n_full_scores)``
    with ``n_processes = threads`` (its joblib CPU fan-out; 1 = none)."""

    name = "fast-plaid"
    # (n_ivf_probe, n_full_scores); the library's default is (8, 4096). Recall@10 vs
    # exhaustive levels off by (4, 1024) on SciFact (0.942 there and at the default), and
    # (8, 4096) at batch 32 ran past 10 minutes per point, so the grid stops at (8, 2048).
    GRID = ((1, 256), (2, 512), (4, 1024), (8, 2048))

    def build(self, index: Path, exchange: Path, threads: int) -> dict[str, Any]:
        torch = _torch(threads)
        from fast_plaid import search

        docs = _doc_tensors(exchange, torch)
        search.FastPlaid(index=str(index), device="cpu").create(documents_embeddings=docs)
        return {"device": "cpu", "nbits": 4, "kmeans_niters": 4, "max_points_per_centroid": 256,
                "version": _version("fast-plaid"), "torch": torch.__version__}

    def open(self, index: Path, exchange: Path, threads: int) -> dict[str, Any]:
        self.torch = _torch(threads)
        from fast_plaid import search

        self.threads = threads
        self.fp = search.FastPlaid(index=str(index), device="cpu")
        return {"device": "cpu", "n_processes": threads}

    def points(self, n_docs: int, query_tokens: int) -> list[dict[str, Any]]:
        return [{"n_ivf_probe": p, "n_full_scores": f} for p, f in self.GRID]

    def prepare(self, queries: list[np.ndarray]) -> Any:
        return [self.torch.from_numpy(np.ascontiguousarray(q, dtype=np.float32)) for q in queries]

    def search(self, batch: Any, k: int, point: dict[str, Any]) -> list[list[int]]:
        res = self.fp.search(queries_embeddings=batch, top_k=k, show_progress=False,
                             n_processes=self.threads, **point)
        return [[int(pid) for pid, _ in r] for r in res]


class XTRWarpEngine(Engine):
    """xtr-warp-rs (the WARP engine): ``XTRWarp(index).create(docs, device="cpu")`` at its
    defaults (nbits 4), ``load(device="cpu")`` (float32, mmap), ``search(nprobe, t_prime,
    max_candidates, bound, num_threads=threads)``. The points scale the library's own
    heuristic (``xtr_warp.hyperparams.optimize`` for the median query length) by
    1/4 .. 4; ``bound`` follows nprobe as in the heuristic."""

    name = "xtr-warp"
    SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)

    def build(self, index: Path, exchange: Path, threads: int) -> dict[str, Any]:
        torch = _torch(threads)
        from xtr_warp import XTRWarp

        docs = _doc_tensors(exchange, torch)
        XTRWarp(index=str(index)).create(docs, device="cpu", show_progress=False)
        return {"device": "cpu", "nbits": 4, "kmeans_niters": 4, "max_points_per_centroid": 256,
                "version": _version("xtr-warp-rs"), "torch": torch.__version__}

    def open(self, index: Path, exchange: Path, threads: int) -> dict[str, Any]:
        self.torch = _torch(threads)
        from xtr_warp import XTRWarp

        self.threads = threads
        self.xw = XTRWarp(index=str(index))
        self.xw.load(device="cpu")
        self.meta = dict(self.xw._metadata or json.loads((index / "metadata.json").read_text()))
        return {"device": "cpu", "dtype": "float32", "mmap": True, "num_threads": threads,
                "metadata": {k: v for k, v in self.meta.items() if k != "created_at"}}

    def points(self, n_docs: int, query_tokens: int) -> list[dict[str, Any]]:
        from xtr_warp.hyperparams import optimize

        _, nprobe, _, max_cand, t_prime = optimize(self.meta, K, query_tokens)
        parts = int(self.meta.get("num_centroids", self.meta["num_partitions"]))
        n_emb = int(self.meta["num_embeddings"])
        out, seen = [], set()
        for s in self.SCALES:
            p = max(1, min(round(nprobe * s), parts))
            point = {"nprobe": p, "t_prime": max(1, min(int(t_prime * s), n_emb)),
                     "max_candidates": max(K, int(max_cand * s)),
                     "bound": min(parts, max(p * 8, int(0.05 * parts)))}
            key = tuple(point.values())
            if key not in seen:
                seen.add(key)
                out.append(point)
        return out

    def prepare(self, queries: list[np.ndarray]) -> Any:
        return [self.torch.from_numpy(np.ascontiguousarray(q, dtype=np.float32)) for q in queries]

    def search(self, batch: Any, k: int, point: dict[str, Any]) -> list[list[int]]:
        res = self.xw.search(batch, top_k=k, num_threads=self.threads, show_progress=False,
                             **point)
        return [[int(pid) for pid, _ in r] for r in res]


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


PEERS: dict[str, Callable[[], Engine]] = {"fast-plaid": FastPlaidEngine, "xtr-warp": XTRWarpEngine}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["build", "serve"])
    ap.add_argument("--engine", choices=sorted(PEERS), required=True)
    ap.add_argument("--exchange", type=Path, required=True)
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--min-calls", type=int, default=10)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    engine = PEERS[args.engine]()
    try:
        if args.what == "build":
            result = build(engine, args.index, args.exchange, args.threads)
        else:
            batches = [int(b) for b in args.batches.split(",")]
            result = serve(engine, args.index, args.exchange, args.threads, batches,
                           args.min_calls)
    except Exception as e:  # reported to the parent as a measured failure
        result = {"engine": args.engine, "error": f"{type(e).__name__}: {e}",
                  "traceback": traceback.format_exc(), "peak_rss_mb": peak_rss_mb()}
    args.out.write_text(json.dumps(result))
    sys.exit(0 if "error" not in result else 1)


if __name__ == "__main__":
    main()
