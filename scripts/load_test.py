"""Load test of the HTTP service (``mvr serve``) on loopback: QPS, latency, errors, RSS, batching gain.

Builds (once) a SciFact index from the cached token vectors written by
``scripts/encode_corpus.py`` (``.cache/vectors/scifact/{documents,queries}.zarr``), then
for each batching window starts a real ``mvr serve`` process on 127.0.0.1 (a free port),
drives it with ``--concurrency`` concurrent httpx async clients sending ``--requests``
``POST /search`` requests (SciFact test queries, drawn with a fixed seed), and stops it.
Bounded: at most ``--requests`` requests and ``--max-seconds`` per run; never leaves
127.0.0.1.

Query modes: ``vectors`` (default) sends the cached query token vectors in the body (JSON,
5 decimals), so the encoder's time is excluded; ``text`` sends the query texts and the
server's encoder is the cached vectors (``encoders.load(.cache/vectors/scifact)``), so
"encoding" is a table lookup (small bodies, no model time either).

    .venv/bin/python scripts/load_test.py                      # 10,000 requests x {1.5 ms, off}
    .venv/bin/python scripts/load_test.py --requests 2000 --windows 2,0 --mode text
    .venv/bin/python scripts/load_test.py --requests 100000 --windows 1.5 --server-mode ssd \
        --rss-every 10 --max-seconds 3600                      # the soak: RSS curve, p99

Prints a markdown table (one row per window) and the batching gain (QPS ratio vs off).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from serving._serve_process import start_serve, stop_serve  # noqa: E402

HOST = "127.0.0.1"  # loopback only, by design


# ---------------------------------------------------------------------- index and queries
def ensure_index(vectors: Path, index: Path, pool_factor: int) -> None:
    """Build the SciFact index from cached document vectors unless it exists."""
    from mvr.format import MANIFEST_NAME

    if (index / MANIFEST_NAME).is_file():
        print(f"index: {index} (exists)", file=sys.stderr)
        return
    import encoders
    from indexing import build_index
    from mvr import PoolingConfig
    from mvr._index_config import IndexConfig

    table = encoders.PrecomputedTable(vectors / "documents.zarr")
    ids, texts = table.ids, table.texts or [None] * len(table)
    encoder = encoders.load(vectors)  # identity recorded: text queries are looked up

    def docs():
        for lo in range(0, len(table), 512):
            mv = table.get(np.arange(lo, min(lo + 512, len(table))))
            for j in range(len(mv)):
                yield ids[lo + j], texts[lo + j], np.asarray(mv[j], dtype=np.float32)

    config = IndexConfig(pooling=PoolingConfig(pool_factor=pool_factor))
    t0 = time.perf_counter()
    build_index(index, docs(), encoder, config, progress=True)
    print(f"index: built {index} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)


def request_bodies(vectors: Path, mode: str, k: int, candidates: int | None) -> list[bytes]:
    """One pre-serialised JSON body per cached query."""
    import encoders

    ids, mv, texts, _ = encoders.read_precomputed(vectors / "queries.zarr")
    bodies = []
    for i in range(len(ids)):
        body: dict = {"k": k, "return_texts": False}
        if candidates is not None:
            body["candidates"] = candidates
        if mode == "text":
            if texts is None:
                raise SystemExit(f"{vectors}/queries.zarr stores no texts: use --mode vectors")
            body["queries"] = [texts[i]]
        else:
            body["vectors"] = [np.round(np.asarray(mv[i], np.float32), 5).tolist()]
        bodies.append(json.dumps(body).encode())
    return bodies


# ---------------------------------------------------------------------- server process
def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def start_server(index: Path, encoder: Path | None, window_ms: float, args) -> tuple:
    opts = [str(index), "--batch-window-ms", str(window_ms),
            "--max-batch-size", str(args.max_batch_size), "--queue-size", str(args.queue_size),
            "--log-level", "info", "--mode", args.server_mode]
    opts += ["--encoder", str(encoder)] if encoder is not None else ["--no-preload-encoder"]
    env = {**os.environ, "NUMBA_CACHE_DIR": str(ROOT / ".cache" / "numba"),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    try:
        proc, port, _ = start_serve(opts, host=HOST, timeout=300, cwd=ROOT, env=env)
    except RuntimeError as e:
        raise SystemExit(str(e)) from e
    return proc, port


# ---------------------------------------------------------------------- load
async def drive(port: int, bodies: list[bytes], order: np.ndarray, concurrency: int,
                max_seconds: float) -> dict:
    """``len(order)`` requests from ``concurrency`` clients; latencies and status counts."""
    import httpx

    counter = itertools.count()
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    batch_sizes: list[int] = []
    t_start = time.perf_counter()
    deadline = t_start + max_seconds
    headers = {"content-type": "application/json"}

    async def client_loop() -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}", timeout=60,
                                     limits=limits) as client:
            while True:
                i = next(counter)
                if i >= len(order) or time.perf_counter() > deadline:
                    return
                t0 = time.perf_counter()
                try:
                    r = await client.post("/search", content=bodies[order[i]], headers=headers)
                    key = str(r.status_code)
                    if r.status_code == 200:
                        batch_sizes.append(r.json()["batch_size"])
                except httpx.HTTPError as e:
                    key = type(e).__name__
                latencies.append(time.perf_counter() - t0)
                statuses[key] = statuses.get(key, 0) + 1

    await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    wall = time.perf_counter() - t_start
    lat = np.asarray(latencies) * 1000.0
    done = len(latencies)
    return {
        "requests": done,
        "seconds": wall,
        "qps": done / wall,
        "p50": float(np.percentile(lat, 50)),
        "p95": float(np.percentile(lat, 95)),
        "p99": float(np.percentile(lat, 99)),
        "errors": done - statuses.get("200", 0),
        "statuses": statuses,
        "mean_batch": float(np.mean(batch_sizes)) if batch_sizes else 0.0,
    }


def run_one(index: Path, encoder: Path | None, window: float, bodies, args) -> dict:
    import httpx

    proc, port = start_server(index, encoder, window, args)
    try:
        with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=60) as c:
            for body in bodies[: args.warmup]:  # warm up numba, page cache, allocator
                c.post("/search", content=body, headers={"content-type": "application/json"})
        rss0 = rss_mib(proc.pid)
        rng = np.random.default_rng(args.seed)
        order = rng.integers(0, len(bodies), size=args.requests)
        curve: list[tuple[float, float]] = []
        done = threading.Event()

        def sample() -> None:  # the server's RSS over the run (flat after warm-up?)
            t0 = time.perf_counter()
            while not done.wait(args.rss_every):
                curve.append((time.perf_counter() - t0, rss_mib(proc.pid)))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            res = asyncio.run(drive(port, bodies, order, args.concurrency, args.max_seconds))
        finally:
            done.set()
            sampler.join()
        res["rss_before"], res["rss_after"] = rss0, rss_mib(proc.pid)
        res["rss_curve"] = curve
        with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=60) as c:
            res["server_batching"] = c.get("/stats").json()["batching"]
    finally:
        stop_serve(proc)
    res["window_ms"] = window
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--vectors", type=Path, default=ROOT / ".cache" / "vectors" / "scifact")
    p.add_argument("--index", type=Path, default=ROOT / ".cache" / "load_test" / "scifact-index")
    p.add_argument("--pool-factor", type=int, default=2)
    p.add_argument("--mode", choices=("text", "vectors"), default="vectors")
    p.add_argument("--requests", type=int, default=10_000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--windows", default="1.5,0", help="batch windows in ms; 0 = batching off")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--candidates", type=int, default=None)
    p.add_argument("--max-batch-size", type=int, default=64)
    p.add_argument("--queue-size", type=int, default=1024)
    p.add_argument("--max-seconds", type=float, default=240.0, help="per run; stops early")
    p.add_argument("--warmup", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--server-mode", choices=("memory", "mmap", "ssd"), default="memory",
                   help="mvr serve --mode")
    p.add_argument("--rss-every", type=float, default=5.0,
                   help="seconds between samples of the server's RSS (the curve printed)")
    args = p.parse_args()

    ensure_index(args.vectors, args.index, args.pool_factor)
    bodies = request_bodies(args.vectors, args.mode, args.k, args.candidates)
    encoder = args.vectors if args.mode == "text" else None
    results = []
    for window in (float(w) for w in args.windows.split(",")):
        res = run_one(args.index, encoder, window, bodies, args)
        print(json.dumps(res), file=sys.stderr)
        results.append(res)

    print(f"\n{args.concurrency} clients, {args.mode} queries ({len(bodies)} SciFact test "
          f"queries), k={args.k}, candidates={args.candidates or 'index default'}, "
          f"pool_factor={args.pool_factor}\n")
    print("| batching window | requests | errors | QPS | p50 ms | p95 ms | p99 ms "
          "| mean batch | server RSS before -> after (MiB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        name = "off" if r["window_ms"] == 0 else f"{r['window_ms']:g} ms"
        print(f"| {name} | {r['requests']} | {r['errors']} | {r['qps']:.1f} | {r['p50']:.1f} "
              f"| {r['p95']:.1f} | {r['p99']:.1f} | {r['mean_batch']:.1f} "
              f"| {r['rss_before']:.0f} -> {r['rss_after']:.0f} |")
    for r in results:
        name = "off" if r["window_ms"] == 0 else f"{r['window_ms']:g} ms"
        pts = ", ".join(f"{t:.0f} s {m:.0f}" for t, m in r["rss_curve"])
        print(f"\nserver RSS (MiB) over the run, window {name}: {pts or 'run shorter than one sample'}")
    off = [r for r in results if r["window_ms"] == 0]
    for r in results:
        if off and r["window_ms"] > 0:
            print(f"\nbatching gain ({r['window_ms']:g} ms vs off): "
                  f"{r['qps'] / off[0]['qps']:.2f}x QPS, p50 {off[0]['p50'] / r['p50']:.2f}x lower")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
