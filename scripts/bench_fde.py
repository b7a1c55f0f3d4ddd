"""MUVERA document-FDE throughput: mvr vs muvera-python 0.2.0 vs fastembed, one run, same data.

Input: ``--docs`` documents x ``--tokens`` unit-normalised Gaussian token vectors of
``--dim`` dims (default 2,000 x 120 x 128). Parameters R=20 repetitions, k=5 SimHash
bits (32 partitions), d_proj=16, empty partitions filled (documents); every
implementation outputs 20 * 32 * 16 = 10,240 dims. How each peer is configured:

* mvr: ``FDEConfig(dim, num_repetitions=20, num_simhash_projections=5, projection_dim=16,
  fill_empty_partitions=True)``; ``encode_document_fdes(MultiVectors)``.
* muvera-python 0.2.0 (a port of Google's reference, numpy + Rust kernels):
  ``Muvera(num_repetitions=20, num_simhash_projections=5, dimension=dim,
  projection_type="ams_sketch", projection_dimension=16, fill_empty_partitions=True)``;
  timed through its batch API (``encode_documents(list)``) and per document
  (``encode_documents(array)`` in a loop, on ``--peer-docs`` documents). Same algorithm
  and same random matrices as mvr; its fill computes the Hamming distance against a
  different bit pattern than the reference (so filled partitions differ from mvr's).
* fastembed ``fastembed.postprocess.muvera.Muvera(dim, k_sim=5, dim_proj=16,
  r_reps=20)``: ``process_document`` per document (it has no batch API). Its algorithm
  differs from the reference: plain binary SimHash cluster ids, a dense +-1 projection
  scaled by 1/sqrt(d_proj) applied after averaging, empty clusters filled from the
  nearest non-empty cluster.

Each timing is the best of ``--repeats`` runs after a warm-up; numba kernels are
compiled (or loaded from the cache) before timing.

Usage::

    .venv/bin/python scripts/bench_fde.py
    .venv/bin/python scripts/bench_fde.py --docs 500 --repeats 2

Prints a markdown table (copied into BENCHMARKS.md, section "FDE encoding").
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mvr import FDEConfig, MultiVectors, encode_document_fdes  # noqa: E402

REPS, BITS, PROJ = 20, 5, 16


def generate(n: int, tokens: int, dim: int, seed: int) -> MultiVectors:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n * tokens, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return MultiVectors(x, np.arange(n + 1, dtype=np.int64) * tokens)


def best_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (numba compile / cache load, matrix generation)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def peers(dim: int) -> dict[str, Callable[[list[np.ndarray]], object]]:
    """Encoders of the installed peers, keyed by table label."""
    out: dict[str, Callable[[list[np.ndarray]], object]] = {}
    try:
        from muvera import Muvera as MuveraPython

        mp = MuveraPython(
            num_repetitions=REPS,
            num_simhash_projections=BITS,
            dimension=dim,
            projection_type="ams_sketch",
            projection_dimension=PROJ,
            fill_empty_partitions=True,
            seed=42,
        )
        out["muvera-python 0.2.0, batch API"] = mp.encode_documents
        out["muvera-python 0.2.0, per document"] = lambda docs: [
            mp.encode_documents(d) for d in docs
        ]
    except ImportError:
        print("muvera-python not installed (pip install muvera-python==0.2.0)", file=sys.stderr)
    try:
        from fastembed.postprocess.muvera import Muvera as FastembedMuvera

        fe = FastembedMuvera(dim=dim, k_sim=BITS, dim_proj=PROJ, r_reps=REPS, random_seed=42)
        out["fastembed Muvera, per document"] = lambda docs: [fe.process_document(d) for d in docs]
    except ImportError:
        print("fastembed not installed (pip install fastembed)", file=sys.stderr)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--tokens", type=int, default=120)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument(
        "--peer-docs",
        type=int,
        default=500,
        help="documents for the per-document peer loops (slow)",
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    mv = generate(args.docs, args.tokens, args.dim, args.seed)
    docs = mv.to_list()
    cfg = FDEConfig(
        dim=args.dim,
        num_repetitions=REPS,
        num_simhash_projections=BITS,
        projection_dim=PROJ,
        fill_empty_partitions=True,
    )
    rows: list[tuple[str, int, float]] = []
    t = best_time(lambda: encode_document_fdes(mv, cfg), args.repeats)
    rows.append(("mvr `encode_document_fdes`", args.docs, t))
    for label, fn in peers(args.dim).items():
        sub = docs if "batch" in label else docs[: args.peer_docs]
        rows.append((label, len(sub), best_time(lambda fn=fn, sub=sub: fn(sub), args.repeats)))

    mvr_rate = rows[0][1] / rows[0][2]
    print(
        f"\n{args.docs} documents x {args.tokens} tokens x {args.dim} dims, R={REPS}, "
        f"k={BITS}, d_proj={PROJ}, fill on -> {cfg.output_dim} dims; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"best of {args.repeats}\n"
    )
    print("| implementation | documents | seconds | documents/s | mvr speed-up |")
    print("|---|---:|---:|---:|---:|")
    for label, n, secs in rows:
        rate = n / secs
        print(f"| {label} | {n:,} | {secs:.3f} | {rate:,.0f} | {mvr_rate / rate:.1f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
