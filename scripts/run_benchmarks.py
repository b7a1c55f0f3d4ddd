"""Run every benchmark script in turn (``make bench``).

Each script prints a markdown table; this runner prints them one after another
with the command that produced them, so the output can be pasted into
BENCHMARKS.md. Scripts that need cached encoder vectors build them first
(``scripts/encode_corpus.py``).

Usage::

    python scripts/run_benchmarks.py [--only fde,pooling] [--timeout 1800]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCIFACT = ROOT.parent / "shared" / "data" / "scifact"

# name -> argv (relative to the repo root)
BENCHMARKS: dict[str, list[str]] = {
    "fde": ["scripts/bench_fde.py"],
    "pooling": ["scripts/bench_pooling.py"],
    "maxsim": ["scripts/bench_maxsim.py"],
    "encoder": ["scripts/bench_encoder.py"],
    "index": ["scripts/bench_index.py"],
    "ssd": ["scripts/bench_ssd.py"],
    "blas": ["scripts/bench_blas_kernels.py"],
    "load": ["scripts/load_test.py"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated subset of: " + ",".join(BENCHMARKS))
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per script")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmarks {unknown}; expected some of {list(BENCHMARKS)}")
    failed = []
    for name in names:
        argv = [sys.executable, *BENCHMARKS[name]]
        print(f"\n## {name}\n\n`{' '.join(['python', *BENCHMARKS[name]])}`\n", flush=True)
        t0 = time.perf_counter()
        try:
            rc = subprocess.run(argv, cwd=ROOT, timeout=args.timeout).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        print(f"\n({name}: exit {rc}, {time.perf_counter() - t0:.0f} s)", flush=True)
        if rc != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
