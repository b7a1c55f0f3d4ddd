"""Exact MaxSim throughput: mvr vs a padded torch einsum baseline, in one run on the same data.

Two workloads on generated unit-normalised token vectors (realistic lengths):

* all pairs: ``--queries`` queries (24-32 tokens) x ``--docs`` documents (60-180 tokens),
  ``mvr.maxsim`` vs the usual padded implementation (pad to the longest item, mask the
  padding with -inf, ``torch.einsum`` over blocks of documents, max, sum);
* re-ranking: 1 query (32 tokens) x ``--candidates`` candidates (40-80 tokens, dim
  ``--rerank-dim``), ``mvr.maxsim_candidates`` vs the same padded einsum: latency per
  query, float32 and float16 inputs (the re-ranking table stores float16).

Usage::

    .venv/bin/python scripts/bench_maxsim.py                 # 300 x 5,000, dim 128
    .venv/bin/python scripts/bench_maxsim.py --dim 384 --docs 2000

Prints a markdown table (copied into BENCHMARKS.md, section "MaxSim").
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
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mvr import MultiVectors, maxsim, maxsim_candidates  # noqa: E402


def generate(rng: np.random.Generator, n: int, lo: int, hi: int, dim: int, dtype) -> MultiVectors:
    """``n`` items of ``lo..hi`` unit-normalised Gaussian token vectors."""
    lengths = rng.integers(lo, hi + 1, n)
    x = rng.standard_normal((int(lengths.sum()), dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return MultiVectors(x.astype(dtype), offsets)


def padded(mv: MultiVectors) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, max_t, dim) float32 tensor and (n, max_t) bool mask."""
    x, mask = mv.astype(np.float32).to_padded()
    return torch.from_numpy(x), torch.from_numpy(mask)


def einsum_maxsim(q: tuple, d: tuple, block: int = 16) -> np.ndarray:
    """Padded baseline: einsum over document blocks, -inf on padded document tokens,
    padded query tokens contribute 0. Shape: (n_q, n_d)."""
    qx, qm = q
    dx, dm = d
    out = torch.empty(qx.shape[0], dx.shape[0])
    with torch.inference_mode():
        for j in range(0, dx.shape[0], block):
            s = torch.einsum("qid,njd->qnij", qx, dx[j : j + block])
            s.masked_fill_(~dm[None, j : j + block, None, :], float("-inf"))
            best = s.max(dim=-1).values * qm[:, None, :]  # (q, n, i)
            out[:, j : j + block] = best.sum(dim=-1)
    return out.numpy()


def einsum_rerank(q: tuple, d: tuple) -> np.ndarray:
    """Padded baseline for one query against its candidates. Shape: (n_candidates,)."""
    qx, _ = q
    dx, dm = d
    with torch.inference_mode():
        s = torch.einsum("id,njd->nij", qx[0], dx)
        s.masked_fill_(~dm[:, None, :], float("-inf"))
        return s.max(dim=-1).values.sum(dim=-1).numpy()


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Best wall time of ``repeats`` runs (seconds) and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def latencies(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Interleaved runs (so machine load hits every contender alike), ms per call."""
    out: dict[str, list[float]] = {k: [] for k in fns}
    for f in fns.values():
        f()  # warm up (numba compile / cache load, allocator)
    for _ in range(repeats):
        for name, f in fns.items():
            t = time.perf_counter()
            f()
            out[name].append((time.perf_counter() - t) * 1e3)
    return out


def all_pairs(args: argparse.Namespace, rng: np.random.Generator) -> list[str]:
    q = generate(rng, args.queries, 24, 32, args.dim, np.float32)
    d = generate(rng, args.docs, 60, 180, args.dim, np.float32)
    maxsim(q[:2], d[:2])  # numba compile / cache load
    t_mvr, s_mvr = timed(lambda: maxsim(q, d), args.repeats)
    qp, dp = padded(q), padded(d)
    t_ein, s_ein = timed(lambda: einsum_maxsim(qp, dp), args.repeats)
    err = float(np.abs(np.asarray(s_mvr) - np.asarray(s_ein)).max())
    pairs = len(q) * len(d)
    flops = 2.0 * q.total_tokens * d.total_tokens * args.dim
    rows = [
        f"### All pairs: {len(q)} queries x {len(d)} documents, dim {args.dim}, float32 "
        f"({q.total_tokens} x {d.total_tokens} tokens; max |mvr - einsum| = {err:.1e})",
        "",
        "| implementation | seconds | query-doc pairs/s | useful GFLOP/s | ratio |",
        "|---|---:|---:|---:|---:|",
        f"| mvr.maxsim | {t_mvr:.2f} | {pairs / t_mvr:,.0f} | {flops / t_mvr / 1e9:.0f} | "
        f"**{t_ein / t_mvr:.2f}x** |",
        f"| padded torch einsum (-inf mask) | {t_ein:.2f} | {pairs / t_ein:,.0f} | "
        f"{flops / t_ein / 1e9:.0f} | 1.00x |",
        "",
    ]
    return rows


def rerank(args: argparse.Namespace, rng: np.random.Generator) -> list[str]:
    n = args.candidates
    q = generate(rng, 1, 32, 32, args.rerank_dim, np.float32)
    d = generate(rng, n, 40, 80, args.rerank_dim, np.float32)
    cand = np.array([0, n])
    d16, q16 = d.astype(np.float16), q.astype(np.float16)
    qp, dp = padded(q), padded(d)
    fns = {
        "mvr.maxsim_candidates, float32": lambda: maxsim_candidates(q, d, cand),
        "mvr.maxsim_candidates, float16": lambda: maxsim_candidates(q16, d16, cand),
        "padded torch einsum, float32": lambda: einsum_rerank(qp, dp),
    }
    ref = einsum_rerank(qp, dp)
    err = float(np.abs(maxsim_candidates(q, d, cand) - ref).max())
    lat = latencies(fns, args.rerank_repeats)
    base = float(np.median(lat["padded torch einsum, float32"]))
    rows = [
        f"### Re-ranking: 1 query (32 tokens) x {n} candidates ({d.total_tokens} tokens), "
        f"dim {args.rerank_dim} (max |mvr - einsum| = {err:.1e}; {args.rerank_repeats} "
        "interleaved runs)",
        "",
        "| implementation | p50 ms | min ms | speed-up (p50) |",
        "|---|---:|---:|---:|",
    ]
    for name, ts in lat.items():
        p50 = float(np.median(ts))
        rows.append(f"| {name} | {p50:.2f} | {min(ts):.2f} | {base / p50:.2f}x |")
    rows.append("")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--docs", type=int, default=5000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--repeats", type=int, default=2, help="all-pairs runs per contender (best)")
    p.add_argument("--candidates", type=int, default=500)
    p.add_argument("--rerank-dim", type=int, default=384)
    p.add_argument("--rerank-repeats", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), numpy {np.__version__}, "
        f"load average {os.getloadavg()[0]:.1f} at start\n"
    )
    print("\n".join(rerank(args, rng) + all_pairs(args, rng)))
    print(f"load average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
