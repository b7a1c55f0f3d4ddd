"""Which OpenBLAS kernels the engine runs on, and what they cost; and the pqr decode.

1. For each ``OPENBLAS_CORETYPE`` setting (unset without mvr's choice, the Haswell AVX2
   kernels, and whatever ``import mvr`` picks when unset: ``mvr._cpu_blas``), a fresh
   subprocess with one thread loads numpy, faiss and torch as the engine does and
   measures: the kernels each OpenBLAS copy picked (threadpoolctl), numpy's sgemm
   2048 x 2048 GFLOP/s, and faiss's nearest of 4,096 centroids for 50,000 x 384-d
   vectors (``IndexFlatL2.search``: the token codec's assignment).
2. The token codec's decode (one thread) of 48,000 tokens for res8, pqr2 and pqr4.

::

    env -u OPENBLAS_CORETYPE .venv/bin/python scripts/bench_blas_kernels.py

Prints markdown tables (BENCHMARKS.md, "OpenBLAS on Zen 5").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, os, sys, time
if sys.argv[1] == "mvr":
    sys.path.insert(0, sys.argv[2])
    import mvr  # noqa: F401  (sets OPENBLAS_CORETYPE first, as the engine's packages do)
import numpy as np, faiss, torch  # noqa: F401  (the engine's process layout)
from threadpoolctl import threadpool_info
arch = [i.get("architecture") for i in threadpool_info() if i.get("internal_api") == "openblas"]
rng = np.random.default_rng(0)
a = rng.standard_normal((2048, 2048)).astype(np.float32)
a @ a
t = time.process_time()
for _ in range(5):
    a @ a
gf = 5 * 2 * 2048 ** 3 / (time.process_time() - t) / 1e9
c = rng.standard_normal((4096, 384)).astype(np.float32)
x = rng.standard_normal((50_000, 384)).astype(np.float32)
idx = faiss.IndexFlatL2(384)
idx.add(c)
idx.search(x[:1000], 1)
t = time.process_time()
idx.search(x, 1)
print(json.dumps({"coretype": os.environ.get("OPENBLAS_CORETYPE"), "kernels": arch,
                  "sgemm_gflops": gf, "assign_s": time.process_time() - t}))
"""


def blas_rows() -> list[dict]:
    base = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    base.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    settings = [("unset, without mvr", "plain", None), ("Haswell", "plain", "Haswell"),
                ("unset, import mvr first", "mvr", None)]
    rows = []
    for label, how, value in settings:
        env = dict(base)
        if value is not None:
            env["OPENBLAS_CORETYPE"] = value
        out = subprocess.run([sys.executable, "-c", _CHILD, how, str(ROOT)], env=env,
                             capture_output=True, text=True, check=True, timeout=600)
        rows.append({"setting": label, **json.loads(out.stdout.strip().splitlines()[-1])})
    return rows


def decode_rows() -> list[dict]:
    import numpy as np
    from threadpoolctl import threadpool_limits

    sys.path.insert(0, str(ROOT))
    from mvr._codec import TokenCodec

    rng = np.random.default_rng(0)
    x = rng.standard_normal((60_000, 384)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    rows = []
    with threadpool_limits(1):
        for dtype in ("res8", "pqr2", "pqr4"):
            codec = TokenCodec.train(x[:20_000], dtype=dtype, num_centroids=256, approx_pq=64,
                                     niter=2)
            cids, codes, acodes = codec.encode_full(x[:48_000])
            codec.decode(cids, codes, acodes)  # compile / warm
            best = float("inf")
            for _ in range(5):
                t = time.perf_counter()
                codec.decode(cids, codes, acodes)
                best = min(best, time.perf_counter() - t)
            rows.append({"dtype": dtype, "decode_ms": 1e3 * best})
    return rows


def main() -> None:
    with open("/proc/cpuinfo") as f:
        model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
    print(f"CPU: {model}, {os.cpu_count()} cores; OPENBLAS_CORETYPE in the caller's "
          f"environment: {os.environ.get('OPENBLAS_CORETYPE')!r}\n")
    print("| OPENBLAS_CORETYPE | kernels (numpy's, faiss's OpenBLAS) | numpy sgemm 2048 GFLOP/s "
          "| faiss nearest of 4,096 centroids, 50,000 x 384-d, CPU s |")
    print("|---|---|---|---|")
    for r in blas_rows():
        print(f"| {r['setting']} ({r['coretype']}) | {' / '.join(map(str, r['kernels']))} | "
              f"{r['sgemm_gflops']:.0f} | {r['assign_s']:.2f} |")
    print("\n| table | decode of 48,000 x 384-d tokens, ms (best of 5, one thread) |\n|---|---|")
    for r in decode_rows():
        print(f"| {r['dtype']} | {r['decode_ms']:.1f} |")


if __name__ == "__main__":
    main()
