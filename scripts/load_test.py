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
        --rss-every 10 --max-seconds 3600 --json runs/soak.json --plot runs/soak.png  # the soak

Prints a markdown table (one row per window), then per window: p50/p95/p99 per block of
``--block`` completed requests (default a tenth of ``--requests``; the first block is the
warm-up), the server's VmRSS curve (time, requests done, MiB; one sample every
``--rss-every`` s, thinned to ``--curve-rows`` rows), and the soak's verdicts: errors by
kind (status code or httpx error), RSS growth from the end of the warm-up block to the end
(MiB, %, and the slope after warm-up), and max over median of the block p99s after warm-up,
with thresholds ``--rss-flat-pct`` and ``--p99-ratio`` (the numbers are what counts). Then the
batching gain (QPS ratio vs off). ``--json`` gets all of it, every sample included;
``--plot`` a PNG of the RSS curve and the block latencies (matplotlib, if installed).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from serving._serve_process import start_serve  # noqa: E402

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
    """A ``mvr serve`` child on loopback; a thread drains its output (the last lines kept)
    so that a long run cannot stall it on a full pipe."""
    opts = [str(index), "--batch-window-ms", str(window_ms),
            "--max-batch-size", str(args.max_batch_size), "--queue-size", str(args.queue_size),
            "--log-level", "info", "--mode", args.server_mode]
    opts += ["--encoder", str(encoder)] if encoder is not None else ["--no-preload-encoder"]
    env = {**os.environ, "NUMBA_CACHE_DIR": str(ROOT / ".cache" / "numba"),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    try:
        proc, port, lines = start_serve(opts, host=HOST, timeout=300, cwd=ROOT, env=env)
    except RuntimeError as e:
        raise SystemExit(str(e)) from e
    tail: collections.deque[str] = collections.deque(lines, maxlen=200)
    drain = threading.Thread(target=lambda: tail.extend(proc.stdout), daemon=True)
    drain.start()
    return proc, port, tail, drain


def stop_server(proc: subprocess.Popen, drain: threading.Thread) -> None:
    """SIGTERM (SIGKILL after 60 s); the drain thread ends with the server's output."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)
    drain.join(timeout=10)


# ---------------------------------------------------------------------- load
@dataclass
class Record:
    """What the clients saw, one entry per completed request in completion order.

    ``block_rss`` is the server's VmRSS (MiB) read as each ``block``-th request completed;
    the RSS sampler thread reads ``len(latency)`` for its "requests done" column.
    """

    latency: list[float] = field(default_factory=list)  # seconds
    key: list[str] = field(default_factory=list)  # "200", "503", ... or an httpx error's name
    end: list[float] = field(default_factory=list)  # seconds since the first request
    block_rss: list[float] = field(default_factory=list)


async def drive(port: int, pid: int, bodies: list[bytes], order: np.ndarray, concurrency: int,
                max_seconds: float, block: int, rec: Record) -> tuple[float, list[int]]:
    """``len(order)`` requests from ``concurrency`` clients into ``rec``; returns the wall
    time and the batch sizes the server reported."""
    import httpx

    counter = itertools.count()
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
                t1 = time.perf_counter()
                rec.latency.append(t1 - t0)
                rec.key.append(key)
                rec.end.append(t1 - t_start)
                if len(rec.latency) % block == 0:
                    rec.block_rss.append(rss_mib(pid))

    await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    return time.perf_counter() - t_start, batch_sizes


def _percentiles(lat_ms: np.ndarray) -> dict:
    if not len(lat_ms):
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
    p50, p95, p99 = np.percentile(lat_ms, [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99)}


def summarise(rec: Record, wall: float, batch_sizes: list[int], block: int) -> dict:
    """The run's totals (QPS, percentiles, errors by kind) and one entry per block of
    ``block`` completed requests (the last one may be partial)."""
    lat = np.asarray(rec.latency) * 1000.0
    end = np.asarray(rec.end)
    ok = np.asarray(rec.key) == "200"
    statuses = dict(collections.Counter(rec.key))
    blocks = []
    for b, lo in enumerate(range(0, len(lat), block)):
        hi = min(lo + block, len(lat))
        t0 = end[lo - 1] if lo else 0.0
        blocks.append({"block": b, "first": lo, "requests": hi - lo, "end_s": float(end[hi - 1]),
                       "qps": (hi - lo) / max(float(end[hi - 1]) - t0, 1e-9),
                       **_percentiles(lat[lo:hi]), "errors": int((~ok[lo:hi]).sum()),
                       "rss_end": rec.block_rss[b] if b < len(rec.block_rss) else None})
    return {"requests": len(lat), "seconds": wall, "qps": len(lat) / wall, **_percentiles(lat),
            "errors": int((~ok).sum()), "statuses": statuses,
            "errors_by_kind": {k: v for k, v in statuses.items() if k != "200"},
            "mean_batch": float(np.mean(batch_sizes)) if batch_sizes else 0.0,
            "block": block, "blocks": blocks}


def verdict(res: dict, asked: int, rss_flat_pct: float, p99_ratio: float) -> dict:
    """The soak's three questions: errors (by kind), RSS flat after warm-up (the first
    block), p99 bounded (max over median of the p99 of the full blocks after warm-up)."""
    out: dict = {"complete": res["requests"] == asked, "errors": res["errors"],
                 "errors_by_kind": res["errors_by_kind"], "errors_ok": res["errors"] == 0}
    warm = res["blocks"][0]["rss_end"] if res["blocks"] else None
    if warm is not None and len(res["blocks"]) > 1:
        growth = res["rss_after"] - warm
        after = [c for c in res["rss_curve"] if c["requests"] >= res["block"]]
        n = np.array([c["requests"] for c in after], dtype=np.float64)
        mib = np.array([c["rss_mib"] for c in after])
        slope = float(np.polyfit(n, mib, 1)[0]) * 10_000 if len(np.unique(n)) > 1 else None
        out.update(rss_warm_mib=warm, rss_end_mib=res["rss_after"], rss_growth_mib=growth,
                   rss_growth_pct=100.0 * growth / warm, rss_slope_mib_per_10k=slope,
                   rss_flat=100.0 * growth / warm <= rss_flat_pct)
    else:
        out.update(rss_flat=None, rss_note="fewer than two blocks: no RSS after warm-up")
    after = res["blocks"][1:] or res["blocks"]  # the warm-up block is reported, not judged
    full = [b for b in after if b["requests"] == res["block"]] or after
    p99s = [b["p99"] for b in full]
    if p99s:
        med, worst = float(np.median(p99s)), int(np.argmax(p99s))
        out.update(p99_warmup_ms=res["blocks"][0]["p99"], p99_blocks=len(p99s),
                   p99_max_ms=p99s[worst],
                   p99_worst_block=full[worst]["block"], p99_median_ms=med,
                   p99_max_over_median=p99s[worst] / med, p99_bounded=p99s[worst] / med <= p99_ratio)
    out["thresholds"] = {"rss_growth_pct": rss_flat_pct, "p99_max_over_median": p99_ratio}
    return out


def run_one(index: Path, encoder: Path | None, window: float, bodies, args) -> dict:
    import httpx

    proc, port, tail, drain = start_server(index, encoder, window, args)
    try:
        with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=60) as c:
            for body in bodies[: args.warmup]:  # warm up numba, page cache, allocator
                c.post("/search", content=body, headers={"content-type": "application/json"})
        rss0 = rss_mib(proc.pid)
        rng = np.random.default_rng(args.seed)
        order = rng.integers(0, len(bodies), size=args.requests)
        block = args.block or max(args.requests // 10, 1)
        rec = Record()
        curve = [{"t": 0.0, "requests": 0, "rss_mib": rss0}]
        done = threading.Event()

        def sample() -> None:  # the server's RSS over the run (flat after warm-up?)
            t0 = time.perf_counter()
            while not done.wait(args.rss_every):
                curve.append({"t": time.perf_counter() - t0, "requests": len(rec.latency),
                              "rss_mib": rss_mib(proc.pid)})

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t_run = time.perf_counter()
        try:
            wall, batch_sizes = asyncio.run(drive(port, proc.pid, bodies, order, args.concurrency,
                                                  args.max_seconds, block, rec))
        finally:
            done.set()
            sampler.join()
        res = summarise(rec, wall, batch_sizes, block)
        res["rss_before"], res["rss_after"] = rss0, rss_mib(proc.pid)
        curve.append({"t": time.perf_counter() - t_run, "requests": len(rec.latency),
                      "rss_mib": res["rss_after"]})
        res["rss_curve"], res["rss_every"] = curve, args.rss_every
        with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=60) as c:
            res["server_batching"] = c.get("/stats").json()["batching"]
    finally:
        stop_server(proc, drain)
    if res["errors"]:
        print("server output (last lines):\n" + "".join(list(tail)[-20:]), file=sys.stderr)
    res["window_ms"] = window
    res["verdict"] = verdict(res, args.requests, args.rss_flat_pct, args.p99_ratio)
    return res


# ---------------------------------------------------------------------- report
def _name(r: dict) -> str:
    return "off" if r["window_ms"] == 0 else f"{r['window_ms']:g} ms"


def _thin(rows: list, most: int) -> list:
    """At most ``most`` rows, evenly spaced, the first and the last kept."""
    if len(rows) <= most:
        return rows
    keep = np.unique(np.linspace(0, len(rows) - 1, most).round().astype(int))
    return [rows[i] for i in keep]


def print_soak(r: dict, curve_rows: int) -> None:
    """Per-block percentiles, the RSS curve (thinned; all of it in --json), the verdicts."""
    print(f"\nwindow {_name(r)}: blocks of {r['block']:,} completed requests\n")
    print("| block | requests | ends at s | QPS | p50 ms | p95 ms | p99 ms | errors "
          "| server RSS at its end (MiB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for b in r["blocks"]:
        rss = "-" if b["rss_end"] is None else f"{b['rss_end']:.0f}"
        print(f"| {b['block'] + 1}{' (warm-up)' if b['block'] == 0 else ''} "
              f"| {b['first']:,}-{b['first'] + b['requests']:,} | {b['end_s']:.0f} "
              f"| {b['qps']:.1f} | {b['p50']:.1f} | {b['p95']:.1f} | {b['p99']:.1f} "
              f"| {b['errors']} | {rss} |")
    rows = _thin(r["rss_curve"], curve_rows)
    print(f"\nserver VmRSS, window {_name(r)} ({len(rows)} of {len(r['rss_curve'])} samples, "
          f"one every {r['rss_every']:g} s)\n")
    print("| t s | requests done | VmRSS MiB |\n|---|---|---|")
    for c in rows:
        print(f"| {c['t']:.0f} | {c['requests']:,} | {c['rss_mib']:.0f} |")
    v = r["verdict"]
    kinds = ", ".join(f"{k}: {n}" for k, n in sorted(v["errors_by_kind"].items())) or "none"
    print(f"\nverdict, window {_name(r)}: {r['requests']:,} requests"
          f"{'' if v['complete'] else ' (stopped by --max-seconds)'}")
    print(f"- errors: {v['errors']} ({kinds})")
    if v["rss_flat"] is None:
        print(f"- RSS flat after warm-up: n/a ({v['rss_note']})")
    else:
        slope = v["rss_slope_mib_per_10k"]
        print(f"- RSS after warm-up (end of block 1) -> end: {v['rss_warm_mib']:.0f} -> "
              f"{v['rss_end_mib']:.0f} MiB, {v['rss_growth_mib']:+.1f} MiB "
              f"({v['rss_growth_pct']:+.2f}%), slope "
              f"{'n/a' if slope is None else f'{slope:+.2f} MiB per 10k requests'}: "
              f"{'flat' if v['rss_flat'] else 'GROWING'} "
              f"(threshold {v['thresholds']['rss_growth_pct']:g}%)")
    if "p99_max_ms" in v:
        print(f"- p99: max block {v['p99_max_ms']:.1f} ms (block {v['p99_worst_block'] + 1}) / "
              f"median block {v['p99_median_ms']:.1f} ms = {v['p99_max_over_median']:.2f}x over "
              f"{v['p99_blocks']} blocks after warm-up: "
              f"{'bounded' if v['p99_bounded'] else 'UNBOUNDED'} "
              f"(threshold {v['thresholds']['p99_max_over_median']:g}x; warm-up block "
              f"{v['p99_warmup_ms']:.1f} ms)")


def plot(results: list[dict], path: Path) -> None:
    """The RSS curve and the block p50/p99 against requests done, one line per window."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"--plot {path}: matplotlib is not installed, no plot", file=sys.stderr)
        return
    fig, (ax_rss, ax_lat) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True)
    for r in results:
        n = [c["requests"] for c in r["rss_curve"]]
        line, = ax_rss.plot(n, [c["rss_mib"] for c in r["rss_curve"]], label=_name(r))
        ax_rss.axvline(r["block"], color=line.get_color(), ls=":", lw=1)
        ends = [b["first"] + b["requests"] for b in r["blocks"]]
        ax_lat.plot(ends, [b["p99"] for b in r["blocks"]], "o-", color=line.get_color(),
                    label=f"{_name(r)} p99")
        ax_lat.plot(ends, [b["p50"] for b in r["blocks"]], "s--", color=line.get_color(),
                    label=f"{_name(r)} p50")
    ax_rss.set_ylabel("server VmRSS (MiB)")
    ax_rss.set_title("mvr serve under load (dotted: end of the warm-up block)")
    ax_rss.legend(title="batch window")
    ax_lat.set_ylabel("latency per block (ms)")
    ax_lat.set_xlabel("requests completed")
    ax_lat.set_ylim(bottom=0)
    ax_lat.legend()
    for ax in (ax_rss, ax_lat):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"plot: {path}", file=sys.stderr)


def print_report(results: list[dict], bodies: list[bytes], args) -> None:
    print(f"\n{args.concurrency} clients, {args.mode} queries ({len(bodies)} SciFact test "
          f"queries), k={args.k}, candidates={args.candidates or 'index default'}, "
          f"pool_factor={args.pool_factor}\n")
    print("| batching window | requests | errors | QPS | p50 ms | p95 ms | p99 ms "
          "| mean batch | server RSS before -> after (MiB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {_name(r)} | {r['requests']} | {r['errors']} | {r['qps']:.1f} | {r['p50']:.1f} "
              f"| {r['p95']:.1f} | {r['p99']:.1f} | {r['mean_batch']:.1f} "
              f"| {r['rss_before']:.0f} -> {r['rss_after']:.0f} |")
    for r in results:
        print_soak(r, args.curve_rows)
    off = [r for r in results if r["window_ms"] == 0]
    for r in results:
        if off and r["window_ms"] > 0:
            print(f"\nbatching gain ({r['window_ms']:g} ms vs off): "
                  f"{r['qps'] / off[0]['qps']:.2f}x QPS, p50 {off[0]['p50'] / r['p50']:.2f}x lower")


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
    p.add_argument("--block", type=int, default=None,
                   help="completed requests per block of the per-block percentiles; the first "
                        "block is the warm-up (default: --requests / 10)")
    p.add_argument("--curve-rows", type=int, default=25,
                   help="rows of the printed RSS curve (thinned; --json has every sample)")
    p.add_argument("--rss-flat-pct", type=float, default=5.0,
                   help="verdict 'flat': RSS growth from the end of the warm-up block to the "
                        "end at most this many percent")
    p.add_argument("--p99-ratio", type=float, default=2.0,
                   help="verdict 'bounded': max block p99 at most this times the median")
    p.add_argument("--plot", type=Path, default=None,
                   help="write the RSS curve and block latencies here (PNG; needs matplotlib)")
    args = p.parse_args()
    if args.block is not None and args.block < 1:
        p.error(f"--block: expected >= 1, got {args.block}")

    ensure_index(args.vectors, args.index, args.pool_factor)
    bodies = request_bodies(args.vectors, args.mode, args.k, args.candidates)
    encoder = args.vectors if args.mode == "text" else None
    results = []
    for window in (float(w) for w in args.windows.split(",")):
        res = run_one(args.index, encoder, window, bodies, args)
        print(json.dumps({k: v for k, v in res.items() if k not in ("blocks", "rss_curve")}),
              file=sys.stderr)
        results.append(res)
    print_report(results, bodies, args)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    if args.plot is not None:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
