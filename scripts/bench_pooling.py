"""Token pooling throughput: mvr vs a per-document scipy Ward loop like PyLate's, same data.

The peer is PyLate's ``pool_embeddings_hierarchical`` recipe, reproduced here (PyLate
itself pulls in sentence-transformers and a torch version of its own): per document,
``torch.mm`` similarities, ``1 - sim`` distances, the condensed upper triangle,
``scipy.cluster.hierarchy.linkage(method="ward")``, ``fcluster(maxclust)`` and a torch
mean per cluster. mvr clusters the whole batch in one numba call.

Usage::

    .venv/bin/python scripts/bench_pooling.py                       # 2,000 x 120-180 x 128
    .venv/bin/python scripts/bench_pooling.py --min-tokens 120 --max-tokens 120

Prints a markdown table (copied into BENCHMARKS.md, section "Token pooling"), including
how many documents got exactly the same pooled vectors from both.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.cluster.hierarchy import fcluster, linkage

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from indexing import pool_tokens  # noqa: E402
from mvr import MultiVectors  # noqa: E402


def pylate_pool(documents: list[np.ndarray], pool_factor: int) -> list[np.ndarray]:
    """PyLate's per-document loop (protected_tokens=0, no re-normalisation)."""
    pooled = []
    for doc in documents:
        emb = torch.from_numpy(doc)
        sims = torch.mm(emb, emb.t())
        distances = 1 - sims.numpy()
        n_clusters = max(emb.shape[0] // pool_factor, 1)
        condensed = distances[np.triu_indices(distances.shape[0], k=1)]
        labels = fcluster(linkage(condensed, method="ward"), t=n_clusters, criterion="maxclust")
        means = [emb[torch.from_numpy(labels == lab)].mean(dim=0) for lab in np.unique(labels)]
        pooled.append(torch.stack(means).numpy())
    return pooled


def same_rows(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal as sets of rows (cluster order differs: PyLate orders by label)."""
    if a.shape != b.shape:
        return False
    return bool(np.allclose(a[np.lexsort(a.T[::-1])], b[np.lexsort(b.T[::-1])], atol=1e-5))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--docs", type=int, default=2000)
    p.add_argument("--min-tokens", type=int, default=120)
    p.add_argument("--max-tokens", type=int, default=180)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--pool-factor", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2, help="interleaved rounds (best of)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    docs = []
    for _ in range(args.docs):
        t = int(rng.integers(args.min_tokens, args.max_tokens + 1))
        x = rng.standard_normal((t, args.dim), dtype=np.float32)
        docs.append(x / np.linalg.norm(x, axis=1, keepdims=True))
    batch = MultiVectors.from_arrays(docs)
    print(
        f"{os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"load average {os.getloadavg()[0]:.1f} at start\n"
    )
    pool_tokens(batch[:4], pool_factor=args.pool_factor)  # numba compile / cache load
    # Rounds interleave mvr and the loop so that machine load hits both alike. The
    # loop's torch.mm uses torch's thread pool; on a loaded 2-core machine one thread
    # is often faster, so the loop is also timed once with the default thread count
    # and the ratio is taken against the faster loop (conservative).
    default_threads = torch.get_num_threads()
    t_mvr, peer_times = float("inf"), {1: float("inf")}
    for _ in range(args.repeats):
        t = time.perf_counter()
        ours = pool_tokens(batch, pool_factor=args.pool_factor, normalize=False)
        t_mvr = min(t_mvr, time.perf_counter() - t)
        torch.set_num_threads(1)
        t = time.perf_counter()
        theirs = pylate_pool(docs, args.pool_factor)
        peer_times[1] = min(peer_times[1], time.perf_counter() - t)
        torch.set_num_threads(default_threads)
    if default_threads != 1:
        t = time.perf_counter()
        pylate_pool(docs, args.pool_factor)
        peer_times[default_threads] = time.perf_counter() - t
    t_peer = min(peer_times.values())
    same = sum(same_rows(ours[i], theirs[i]) for i in range(len(docs)))
    print(
        f"### {args.docs} documents x {args.min_tokens}-{args.max_tokens} tokens x {args.dim} "
        f"dims, unit-normalised, pool_factor {args.pool_factor} "
        f"({batch.total_tokens} -> {ours.total_tokens} vectors)\n"
    )
    print("| implementation | seconds | documents/s | ratio to the faster loop |")
    print("|---|---:|---:|---:|")
    print(f"| mvr (indexing.pool_tokens, one batch, {default_threads} threads) | {t_mvr:.3f} | {args.docs / t_mvr:,.0f} | "
          f"**{t_peer / t_mvr:.1f}x** |")
    for threads, t_loop in peer_times.items():
        print(f"| PyLate-style per-document scipy Ward loop, torch {threads} thread(s) | "
              f"{t_loop:.3f} | {args.docs / t_loop:,.0f} | {t_peer / t_loop:.2f}x |")
    print(
        f"\nSame pooled vectors as the scipy loop (as sets, atol 1e-5): {same}/{len(docs)} documents "
        "(the loop computes distances in float32, mvr in float64: near-tied merges may differ)."
    )
    print(f"load average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
