"""Approximate MaxSim kernel (:func:`mvr._approx.pq_scores`): the engine's kernel against
the plain numba loop it replaced, on PyPI-shaped synthetic data, one thread.

Shapes (defaults): 200,000 documents of 5-17 tokens (11 on average, PyPI's pooled
summaries), 64-byte approximate codes, 4,096 centroids, one query of 23 tokens, 3,800
candidate rows (the default FDE + token-list union at PyPI scale), sorted as the
searcher sorts them. Both kernels take the same 8-bit tables (``prepare_pq``); the
reference pads the query to a multiple of 8 as the engine did before. Scores must
agree to float rounding (checked). Prints a markdown row per query length::

    .venv/bin/python scripts/bench_approx_kernel.py
    .venv/bin/python scripts/bench_approx_kernel.py --qlens 23 32 40 --candidates 1000 3800
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numba
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mvr._approx import _PREFETCH_AHEAD, pq_scores, prepare_pq, quantize_tables  # noqa: E402
from mvr._maxsim import _prefetch  # noqa: E402


@numba.njit(nogil=True, cache=True, fastmath=True)
def _reference(st, lut8, bias, scale, nq, rows, tok_starts, cids, acodes, out, addr):  # pragma: no cover
    # the kernel before mvr._pq_tiles (session 4-6), verbatim: lanes looped in numba
    p = st.shape[1]
    m_count = acodes.shape[1]
    acc = np.empty(p, dtype=np.float32)
    tot = np.empty(p, dtype=np.uint16)
    n_rows = rows.shape[0]
    for j in range(n_rows):
        if j + _PREFETCH_AHEAD < n_rows:
            ahead = rows[j + _PREFETCH_AHEAD]
            if ahead >= 0:
                a0 = addr + tok_starts[ahead] * m_count
                a1 = addr + tok_starts[ahead + 1] * m_count
                while a0 < a1:
                    _prefetch(a0)
                    a0 += 64
        r = rows[j]
        if r < 0:
            out[j] = -np.inf
            continue
        for a in range(p):
            acc[a] = -np.inf
        for t in range(tok_starts[r], tok_starts[r + 1]):
            for a in range(p):
                tot[a] = 0
            for m in range(m_count):
                code = acodes[t, m]
                for a in range(p):
                    tot[a] += lut8[m, code, a]
            c = cids[t]
            for a in range(p):
                acc[a] = max(acc[a], st[c, a] + bias[a] + scale[a] * np.float32(tot[a]))
        s = np.float32(0.0)
        for a in range(nq):
            s += acc[a]
        out[j] = s


def _best_of(fn, repeat: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=200_000)
    ap.add_argument("--pq", type=int, default=64, help="bytes per token (sub-quantizers)")
    ap.add_argument("--centroids", type=int, default=4096)
    ap.add_argument("--qlens", type=int, nargs="+", default=[14, 23, 32])
    ap.add_argument("--candidates", type=int, nargs="+", default=[3800])
    ap.add_argument("--repeat", type=int, default=7)
    a = ap.parse_args()
    from threadpoolctl import threadpool_limits

    import mvr._pq_tiles as tiles

    rng = np.random.default_rng(0)
    lens = rng.integers(5, 18, a.docs)
    tok = np.zeros(a.docs + 1, np.int64)
    np.cumsum(lens, out=tok[1:])
    cids = rng.integers(0, a.centroids, int(tok[-1])).astype(np.uint16)
    acodes = rng.integers(0, 256, (int(tok[-1]), a.pq), dtype=np.uint8)
    print(f"host AVX-512: {tiles._WIDE}; {a.docs} docs, {int(tok[-1])} tokens, {a.pq} B codes")
    print("| query tokens | candidates | tokens scored | reference ms | kernel ms | speed-up | ns per token (kernel) |")
    print("|---|---|---|---|---|---|---|")
    with threadpool_limits(1):
        for nq in a.qlens:
            st = rng.standard_normal((a.centroids, nq)).astype(np.float32)
            lut = (0.02 * rng.standard_normal((a.pq, 256, nq))).astype(np.float32)
            qo = np.array([0, nq])
            prep = prepare_pq(st, lut, qo)
            p8 = max(8, -(-nq // 8) * 8)
            st8 = np.zeros((a.centroids, p8), np.float32)
            st8[:, :nq] = st
            lut8, bias, scale = quantize_tables(lut, p8)
            for n in a.candidates:
                rows = np.sort(rng.choice(a.docs, n, replace=False))[None, :]
                ref = np.empty(n, np.float32)
                got: list[np.ndarray] = []
                def run_ref(rows=rows, ref=ref, st8=st8, lut8=lut8, bias=bias, scale=scale,
                            nq=nq) -> None:
                    _reference(st8, lut8, bias, scale, nq, rows[0], tok, cids, acodes, ref,
                               acodes.ctypes.data)

                def run_new(rows=rows, st=st, qo=qo, prep=prep, got=got) -> None:
                    got.append(pq_scores(st, None, qo, rows, tok, cids, acodes, prep))

                t_ref, t_new = _best_of(run_ref, a.repeat), _best_of(run_new, a.repeat)
                diff = float(np.abs(got[-1][0] - ref).max())
                if diff > 1e-4 * max(1.0, float(np.abs(ref).max())):
                    raise SystemExit(f"kernels disagree: max |diff| {diff}")
                ntok = int(lens[rows[0]].sum())
                print(f"| {nq} | {n} | {ntok} | {1e3 * t_ref:.2f} | {1e3 * t_new:.2f} | "
                      f"{t_ref / t_new:.1f}x | {1e9 * t_new / ntok:.0f} |", flush=True)


if __name__ == "__main__":
    main()
