"""Re-rank kernel: exact MaxSim of a query against its candidates, against the
machine's single-core limit, and against the old kernel and peers, in one run.

What it measures (everything on ONE thread: OMP/OpenBLAS/MKL/NUMBA/RAYON threads = 1
set before the imports, threadpoolctl limits, ``torch.set_num_threads(1)``):

* the machine: CPU model and features detected at run time (``/proc/cpuinfo``
  flags, torch's CPU capability, the CPU name numba/LLVM compiles for, the
  OpenBLAS kernel set);
* the single-core limit, empirically: a large float32 GEMM (n = ``--peak-n``) with
  numpy/OpenBLAS and with torch/MKL, the best of both is "peak"; a streaming read
  (memory bandwidth) and float16 -> float32 conversion rates (the new kernel's
  ``vcvtph2ps`` path, the old bit-twiddling kernel, numpy's ``astype``);
* the re-rank workload: ``batch`` queries, each against its own ``N`` candidates
  (``mvr.maxsim_candidates``, one call), float16 (the token table's dtype) and
  float32 (decoded codes) documents, for:
  ``old`` (the kernel before the last change, loaded from git at ``--old-commit``),
  ``new`` (``mvr.maxsim_candidates``), ``maxsim-cpu`` (PyPI; float32 only; in a
  subprocess of its own right after the others, because it crashed, hung and
  returned wrong scores on 384-d inputs here: the failure is recorded as the
  result), and ``numpy padded`` (pad to the
  longest candidate, -inf on padded rows, ``np.einsum`` (BLAS), max, sum; the
  padding is built outside the timing, which favours it; batch 1 only).

Vectors: SciFact from ``--vectors`` (``documents.zarr`` + ``queries.zarr`` as written
by ``scripts/encode_corpus.py``), documents pooled with
``indexing.pool_tokens(pool_factor=--pool-factor)`` (cached under
``.cache/bench_rerank``); without them, generated unit vectors of the same shapes.
A second, generated 128-d workload is the shape maxsim-cpu supports.

Timing: implementations interleaved within each repeat (load hits all alike);
wall-clock p50 and process-CPU-time p50 (``time.process_time``, all threads of the
process, so a library that starts helper threads anyway is charged for them; on a
loaded machine it leaves out the time spent waiting for a core, not the cache
pollution by other processes). GFLOP/s and GB/s use the CPU-time p50, as does the
peak they are compared with (the best of a GEMM measured before and after the
workloads): on a quiet machine both columns agree.

Usage::

    .venv/bin/python scripts/bench_rerank_kernel.py                  # defaults below
    .venv/bin/python scripts/bench_rerank_kernel.py --candidates 200 1000 --batches 1 32 \\
        --repeats 9 --max-gb 1.5

Prints markdown tables (copied into BENCHMARKS.md, section "Re-rank kernel").
"""

from __future__ import annotations

import os

for _var in (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "RAYON_NUM_THREADS",
):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from types import ModuleType  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mvr import MultiVectors, maxsim_candidates  # noqa: E402
from mvr._maxsim import _f16_to_f32  # noqa: E402

torch.set_num_threads(1)
# mvr/_maxsim.py with the 4 x 3 tiles vectorised over the dimension (before the transposed
# tiles of mvr/_maxsim_tiles.py); the first fused kernel replaced 8328de7f314732d8b3a74c3dfc65b50536270482
OLD_COMMIT = "310ccccef85bf63815f2619a8ab0543f4335a77b"
FEATURES = ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")


# ---------------------------------------------------------------------- machine


def machine() -> dict[str, str]:
    """CPU model and features, all read at run time."""
    info = {"model": platform.processor() or "?", "flags": ""}
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            if line.startswith("model name") and info["model"] in ("?", "x86_64", ""):
                info["model"] = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                info["flags"] = " ".join(
                    f for f in FEATURES if f in flags
                ) or "none of " + ",".join(FEATURES)
                break
    except OSError:
        pass
    import llvmlite.binding as llvm

    info["llvm_cpu"] = llvm.get_host_cpu_name()
    info["torch_cpu"] = torch.backends.cpu.get_cpu_capability()
    blas = [f"{i.get('internal_api')}:{i.get('architecture', '')}" for i in threadpool_info()]
    info["blas"] = ", ".join(b for b in blas if b)
    info["cores"] = str(os.cpu_count())
    info["load"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return info


def best_of(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Min process-CPU seconds and min wall seconds over ``repeats`` runs."""
    cpu, wall = [], []
    for _ in range(repeats):
        c, w = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return min(cpu), min(wall)


def peak(n: int, repeats: int) -> tuple[float, list[str]]:
    """Single-core float32 GEMM GFLOP/s (CPU time), numpy/OpenBLAS and torch."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty_like(a)
    ta, tb, tc = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(c)
    flops = 2.0 * n**3
    rows, best = [], 0.0
    for name, fn in (
        ("numpy/OpenBLAS sgemm", lambda: np.matmul(a, b, out=c)),
        ("torch sgemm", lambda: torch.matmul(ta, tb, out=tc)),
    ):
        fn()
        cpu, wall = best_of(fn, repeats)
        best = max(best, flops / cpu / 1e9)
        rows.append(f"| {name} {n}x{n} | {flops / cpu / 1e9:.1f} | {flops / wall / 1e9:.1f} |")
    # the re-rank's own shape, without the max: one query's 24 rows (SciFact's 22.8 tokens,
    # padded to the kernel's 4-row tiles) against 1,000 candidates x 120 tokens, float32
    qa = rng.standard_normal((24, 384), dtype=np.float32)
    xa = rng.standard_normal((384, 120_000), dtype=np.float32)
    sa = np.empty((24, 120_000), np.float32)
    tqa, txa, tsa = torch.from_numpy(qa), torch.from_numpy(xa), torch.from_numpy(sa)
    sflops = 2.0 * 24 * 384 * 120_000
    for name, fn in (
        ("numpy/OpenBLAS sgemm 24x384 @ 384x120000 (the re-rank's shape)",
         lambda: np.matmul(qa, xa, out=sa)),
        ("torch sgemm 24x384 @ 384x120000 (the re-rank's shape)",
         lambda: torch.matmul(tqa, txa, out=tsa)),
    ):
        fn()
        cpu, wall = best_of(fn, repeats)
        rows.append(f"| {name} | {sflops / cpu / 1e9:.1f} | {sflops / wall / 1e9:.1f} |")
    # bf16 inputs, float32 accumulation (oneDNN: AMX or AVX512-BF16 where the CPU has them):
    # reported beside the float32 limit, which stays the one the kernel (float32 products,
    # float32 results) is compared with
    ta16, tb16 = ta.to(torch.bfloat16), tb.to(torch.bfloat16)
    fn16 = lambda: torch.matmul(ta16, tb16)  # noqa: E731
    fn16()
    cpu, wall = best_of(fn16, repeats)
    rows.append(f"| torch bf16 GEMM {n}x{n} (not the kernel's arithmetic) | "
                f"{flops / cpu / 1e9:.1f} | {flops / wall / 1e9:.1f} |")
    return best, rows


@numba.njit(nogil=True, cache=True, fastmath=True)
def _read_sum(x: np.ndarray) -> float:  # pragma: no cover - compiled
    """Sum of a flat float32 array: a streaming read. Shape: (n,)."""
    s = np.float32(0.0)
    for i in range(x.shape[0]):
        s += x[i]
    return s


def memory_rates(old: ModuleType | None, repeats: int) -> list[str]:
    """Streaming read and float16 -> float32 conversion, GB/s of bytes read + written."""
    n = 64 << 20  # 64 Mi values: 256 MB float32, far beyond the caches
    x = np.ones(n, dtype=np.float32)
    h = np.ones(n, dtype=np.float16)
    dst = np.empty(n, dtype=np.float32)
    _read_sum(x[:8])
    cpu, _ = best_of(lambda: _read_sum(x), repeats)
    rows = [f"| streaming read, float32 | {x.nbytes / cpu / 1e9:.1f} |"]
    convs: list[tuple[str, Callable[[], object]]] = [
        ("f16 -> f32, new (F16C via LLVM fpext)", lambda: _f16_to_f32(h.view(np.uint16), dst)),
        ("f16 -> f32, numpy astype", lambda: h.astype(np.float32)),
    ]
    if old is not None:
        convs.insert(
            1,
            ("f16 -> f32, old (integer bit ops)", lambda: old._f16_to_f32(h.view(np.uint16), dst)),
        )
    for name, fn in convs:
        fn()
        cpu, _ = best_of(fn, repeats)
        rows.append(f"| {name} | {(h.nbytes + dst.nbytes) / cpu / 1e9:.1f} |")
    return rows


# ---------------------------------------------------------------------- implementations


def load_old(commit: str) -> ModuleType | None:
    """The pre-change ``mvr/_maxsim.py`` from git, as a module; None without git."""
    try:
        src = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{commit}:mvr/_maxsim.py"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"(old kernel unavailable: {e})", file=sys.stderr)
        return None
    folder = Path(tempfile.mkdtemp(prefix="mvr_old_maxsim_"))
    path = folder / "mvr_old_maxsim.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("mvr_old_maxsim", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["mvr_old_maxsim"] = module
    spec.loader.exec_module(module)
    return module


def padded_reference(q: np.ndarray, docs: MultiVectors) -> Callable[[], np.ndarray]:
    """numpy padded MaxSim for one query; the padding is prepared here (untimed).

    q Shape: (t_q, dim) float32. Returns a function giving Shape: (n_docs,).
    """
    x, mask = docs.astype(np.float32).to_padded()  # (n, t, dim), (n, t)
    neg = np.where(mask, 0.0, -np.inf).astype(np.float32)[:, :, None]  # (n, t, 1)
    block = max(1, (64 << 20) // max(1, x.shape[1] * q.shape[0] * 4))

    def run() -> np.ndarray:
        out = np.empty(x.shape[0], dtype=np.float32)
        for j in range(0, x.shape[0], block):
            s = np.einsum("ntd,qd->ntq", x[j : j + block], q, optimize=True)  # BLAS
            s += neg[j : j + block]
            out[j : j + block] = s.max(axis=1).sum(axis=1)
        return out

    return run


_MAXSIM_CPU_RUN = """
import os, sys, time
os.environ["OMP_NUM_THREADS"] = os.environ["RAYON_NUM_THREADS"] = "1"
import numpy as np
import maxsim_cpu
z = np.load(sys.argv[1])
repeats = int(sys.argv[3])
qf, qo, flat, off, cand = z["qf"], z["qo"], z["flat"], z["off"], z["cand"]
qs = [qf[qo[i]:qo[i + 1]] for i in range(len(qo) - 1)]
lists = [[flat[off[j]:off[j + 1]] for j in range(cand[i], cand[i + 1])] for i in range(len(qs))]
def run():
    return np.concatenate([maxsim_cpu.maxsim_scores_variable(qs[i], lists[i]) for i in range(len(qs))])
scores = np.asarray(run(), dtype=np.float32)
np.save(sys.argv[2] + ".scores.npy", scores)  # saved first: a later crash still leaves them
cpu, wall = [], []
for _ in range(repeats):
    c, w = time.process_time(), time.perf_counter()
    run()
    cpu.append(time.process_time() - c)
    wall.append(time.perf_counter() - w)
np.save(sys.argv[2] + ".times.npy", np.array([cpu, wall]))
"""


def maxsim_cpu_run(
    q: MultiVectors, d32: MultiVectors, cand: np.ndarray, repeats: int, timeout: float
) -> tuple[str, np.ndarray | None, np.ndarray | None]:
    """maxsim-cpu on the cell, in a subprocess (it has crashed and hung the interpreter
    here). Returns (status, scores, times (2, repeats): CPU and wall seconds); status is
    'ok' or the exact failure."""
    try:
        import maxsim_cpu  # noqa: F401
    except ImportError as e:
        return f"not installed: {e}", None, None
    with tempfile.TemporaryDirectory() as tmp:
        inp, outp = Path(tmp) / "in.npz", str(Path(tmp) / "out")
        qv = q.vectors.astype(np.float32)
        np.savez(inp, qf=qv, qo=q.offsets, flat=d32.vectors, off=d32.offsets, cand=cand)
        cmd = [sys.executable, "-c", _MAXSIM_CPU_RUN, str(inp), outp, str(repeats)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return f"hung: no result in {timeout:.0f} s (killed)", None, None
        scores = np.load(outp + ".scores.npy") if Path(outp + ".scores.npy").exists() else None
        times = np.load(outp + ".times.npy") if Path(outp + ".times.npy").exists() else None
    if proc.returncode != 0:
        how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
        lines = [x for x in proc.stderr.strip().splitlines() if not x.startswith(("LIBXSMM", " "))]
        return f"crashed ({how}; 11 = SIGSEGV) {' '.join(lines[-1:])[:80]}".strip(), None, None
    return "ok", scores, times


# ---------------------------------------------------------------------- workloads


def generated(rng: np.random.Generator, lengths: np.ndarray, dim: int) -> MultiVectors:
    """Unit-normalised Gaussian token vectors, float16. Shape per item: (t_i, dim)."""
    x = rng.standard_normal((int(lengths.sum()), dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return MultiVectors(x.astype(np.float16), offsets)


def scifact(path: Path, pool_factor: int) -> tuple[MultiVectors | None, MultiVectors | None]:
    """(queries as float32, pooled documents as float16); None for a missing table."""
    from encoders import read_precomputed

    queries = None
    if (path / "queries.zarr").exists():
        queries = read_precomputed(path / "queries.zarr")[1].astype(np.float32)
    if not (path / "documents.zarr").exists():
        return queries, None
    cache = ROOT / ".cache" / "bench_rerank" / f"{path.name}_pooled_pf{pool_factor}.npz"
    if cache.exists():
        z = np.load(cache)
        docs = MultiVectors(z["vectors"], z["offsets"], validate=False)
    else:
        from indexing import pool_tokens

        _, raw, _, _ = read_precomputed(path / "documents.zarr")
        t = time.perf_counter()
        docs = pool_tokens(raw, pool_factor=pool_factor).astype(np.float16)
        print(f"(pooled {len(raw)} documents in {time.perf_counter() - t:.0f} s)", file=sys.stderr)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, vectors=docs.vectors, offsets=docs.offsets)
    return queries, docs


def candidates(
    rng: np.random.Generator, queries: MultiVectors, docs: MultiVectors, n: int, batch: int
) -> tuple[MultiVectors, MultiVectors, np.ndarray]:
    """``batch`` queries, each with ``n`` distinct random candidates, gathered contiguously."""
    qi = rng.choice(len(queries), size=batch, replace=batch > len(queries))
    picks = np.concatenate(
        [rng.choice(len(docs), size=n, replace=n > len(docs)) for _ in range(batch)]
    )
    return queries.take(qi), docs.take(picks), np.arange(batch + 1, dtype=np.int64) * n


def run_workload(
    name: str,
    queries: MultiVectors,
    docs: MultiVectors,
    args: argparse.Namespace,
    old: ModuleType | None,
    peak_gflops: float,
    rng: np.random.Generator,
) -> list[str]:
    rows = []
    for n in args.candidates:
        for batch in args.batches:
            q, d16, cand = candidates(rng, queries, docs, n, batch)
            if d16.vectors.size * 4 > args.max_gb * 1e9:
                rows.append(f"| {name} | {n} | {batch} | (skipped: float32 tokens > --max-gb) |")
                continue
            rows += measure(name, q, d16, d16.astype(np.float32), cand, args, old, peak_gflops)
    return rows


def measure(
    name: str,
    q: MultiVectors,
    d16: MultiVectors,
    d32: MultiVectors,
    cand: np.ndarray,
    args: argparse.Namespace,
    old: ModuleType | None,
    peak_gflops: float,
) -> list[str]:
    batch, n = len(q), int(cand[1])
    qs = [np.ascontiguousarray(q[i], dtype=np.float32) for i in range(batch)]
    flops = sum(
        2.0 * qs[i].shape[0] * (d16.offsets[cand[i + 1]] - d16.offsets[cand[i]]) * d16.dim
        for i in range(batch)
    )
    fns: dict[tuple[str, str], Callable[[], object]] = {}
    ref = maxsim_candidates(q, d32, cand)
    for dt, d in (("float16", d16), ("float32", d32)):
        fns[("new", dt)] = lambda d=d: maxsim_candidates(q, d, cand)
        if old is not None:
            fns[("old", dt)] = lambda d=d: old.maxsim_candidates(q, d, cand)
    if not args.skip_padded and batch == 1:  # padded copies of 32 queries' candidates: GBs
        pads = [padded_reference(qs[i], d32[int(cand[i]) : int(cand[i + 1])]) for i in range(batch)]
        fns[("numpy padded", "float32")] = lambda: np.concatenate([p() for p in pads])
    errs = {}
    for key, fn in fns.items():  # warm-up and agreement with the new kernel (float32 docs)
        got = np.asarray(fn(), dtype=np.float32)
        errs[key] = float(np.abs(got - ref).max())
    cpu: dict[tuple[str, str], list[float]] = {k: [] for k in fns}
    wall: dict[tuple[str, str], list[float]] = {k: [] for k in fns}
    for _ in range(args.repeats):
        for key, fn in fns.items():
            c, w = time.process_time(), time.perf_counter()
            fn()
            cpu[key].append(time.process_time() - c)
            wall[key].append(time.perf_counter() - w)
    # maxsim-cpu, float32 only, in its own process right after (not interleaved)
    mc_status, mc_scores, mc_times = maxsim_cpu_run(q, d32, cand, args.repeats, args.peer_timeout)
    mc = ("maxsim-cpu", "float32")
    if mc_status == "ok" and mc_scores is not None and mc_times is not None:
        finite = bool(np.all(np.isfinite(mc_scores)))
        errs[mc] = float(np.abs(mc_scores - ref).max()) if finite else float("inf")
        cpu[mc], wall[mc] = list(mc_times[0]), list(mc_times[1])
    out = []
    for key in cpu:
        impl, dt = key
        c50, w50 = float(np.median(cpu[key])), float(np.median(wall[key]))
        token_bytes = (d16 if dt == "float16" else d32).vectors.nbytes
        gf = flops / c50 / 1e9
        out.append(
            f"| {name} | {n} | {batch} | {impl} | {dt} | {w50 * 1e3:.1f} | {c50 * 1e3:.1f} | "
            f"{gf:.1f} | {100 * gf / peak_gflops:.0f}% | {token_bytes / c50 / 1e9:.2f} | "
            f"{errs[key]:.1e} |"
        )
    if mc_status != "ok":
        out.append(f"| {name} | {n} | {batch} | maxsim-cpu | float32 | {mc_status} |")
    elif errs[mc] > 1e-3 * max(1.0, float(np.abs(ref).max())):
        out.append(
            f"| {name} | {n} | {batch} | maxsim-cpu | float32 | WRONG SCORES (max abs diff above) |"
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vectors", type=Path, default=ROOT / ".cache" / "vectors" / "scifact")
    p.add_argument("--pool-factor", type=int, default=2)
    p.add_argument("--candidates", type=int, nargs="+", default=[200, 1000])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--peak-n", type=int, default=2048)
    p.add_argument(
        "--max-gb", type=float, default=1.5, help="skip cells whose float32 tokens exceed this"
    )
    p.add_argument("--old-commit", default=OLD_COMMIT)
    p.add_argument(
        "--skip-padded", action="store_true", help="leave out the numpy padded reference"
    )
    p.add_argument("--no-128", action="store_true", help="leave out the generated 128-d workload")
    p.add_argument("--peer-timeout", type=float, default=300.0, help="seconds for a maxsim-cpu run")
    args = p.parse_args()
    rng = np.random.default_rng(0)
    with threadpool_limits(1):
        info = machine()
        old = load_old(args.old_commit)
        print(
            f"CPU: {info['model']} ({info['cores']} cores); flags: {info['flags']}; LLVM target: "
            f"{info['llvm_cpu']}; torch: {info['torch_cpu']}; BLAS: {info['blas']}; "
            f"load average at start: {info['load']}\n"
        )
        peak_gflops, peak_rows = peak(args.peak_n, max(3, args.repeats))
        print(
            "| single-core limit (1 thread) | GFLOP/s, CPU time | GFLOP/s, wall |\n|---|---:|---:|"
        )
        print("\n".join(peak_rows))
        print(f"\npeak used below: {peak_gflops:.1f} GFLOP/s\n")
        print("| memory (1 thread) | GB/s read + written |\n|---|---:|")
        print("\n".join(memory_rates(old, max(3, args.repeats))) + "\n")
        header = (
            "| workload | N | batch | kernel | docs | ms p50 wall | ms p50 CPU | GFLOP/s | "
            "% of peak | GB/s tokens | max abs diff vs new f32 |\n"
            "|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|"
        )
        print(header)
        workloads = []
        sq, sd = scifact(args.vectors, args.pool_factor)
        if sq is not None and sd is not None:
            workloads.append((f"SciFact pf{args.pool_factor} {sd.dim}-d", sq, sd))
        else:
            lengths = np.clip(np.round(np.random.default_rng(1).normal(120, 45, 5000)), 8, 400)
            d = generated(rng, lengths.astype(np.int64), 384)
            if sq is not None:
                workloads.append(("SciFact queries x generated 384-d docs", sq, d))
            else:
                q = generated(rng, np.full(300, 23), 384).astype(np.float32)
                workloads.append(("generated 384-d", q, d))
        if not args.no_128:
            lengths = np.clip(np.round(np.random.default_rng(2).normal(120, 45, 5000)), 8, 400)
            q = generated(rng, np.full(300, 23), 128).astype(np.float32)
            workloads.append(("generated 128-d", q, generated(rng, lengths.astype(np.int64), 128)))
        for name, q, d in workloads:
            for row in run_workload(name, q, d, args, old, peak_gflops, rng):
                print(row, flush=True)
        end_peak, end_rows = peak(args.peak_n, max(3, args.repeats))
        print(
            "\n| single-core limit, again after the workloads | GFLOP/s, CPU time | GFLOP/s, wall |"
        )
        print("|---|---:|---:|\n" + "\n".join(end_rows))
        if end_peak > peak_gflops:
            print(
                f"(peak after the workloads {end_peak:.1f} > {peak_gflops:.1f} used above: the "
                f"percentages above are {peak_gflops / end_peak:.2f}x lower against it)"
            )
        print(f"\nload average at end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
