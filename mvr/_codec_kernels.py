"""Compiled decoding of refined token codes (``pqr2`` / ``pqr4``, :mod:`mvr._codec`).

A refined token is centroid + approximate code (PQ) + per-dimension levels of what the
PQ leaves. numpy took three passes over the output (a fancy-indexed byte-table gather,
faiss's ``sa_decode``, the centroid add) and ran 11-16x slower than res8's decode (48,000
tokens of 384 dims, one thread, Zen 5: 73 ms pqr2, 112 ms pqr4, 6.8 ms res8); this is one
pass, written once per output value: 25 / 28 ms (``scripts/bench_blas_kernels.py``). Kept apart from :mod:`mvr._codec` so that
importing the codec does not import numba.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(nogil=True, cache=True)
def _decode_refined(cids, acodes, codes, centroids, pq, lut, out):  # pragma: no cover - numba
    n, dim = out.shape
    m, dsub = pq.shape[0], pq.shape[2]
    p, per = lut.shape[0], lut.shape[2]
    for i in range(n):
        c = cids[i]
        for s in range(m):
            k = acodes[i, s]
            base = s * dsub
            for j in range(dsub):
                out[i, base + j] = centroids[c, base + j] + pq[s, k, j]
        for b in range(p):
            v = codes[i, b]
            base = b * per
            for j in range(per):
                out[i, base + j] += lut[b, v, j]


def decode_refined(cids: np.ndarray, acodes: np.ndarray, codes: np.ndarray,
                   centroids: np.ndarray, pq: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Tokens (shape (n, dim), float32): ``centroids[cids] + PQ(acodes) + levels(codes)``.

    ``cids`` (n,) integer centroid ids (checked in range by the caller), ``acodes``
    (n, m) uint8 approximate codes, ``codes`` (n, P) uint8 packed level indices,
    ``centroids`` (k, dim), ``pq`` (m, 256, dim / m) and ``lut`` (P, 256, dim / P)
    float32, as :class:`mvr._codec.TokenCodec` holds them.
    """
    n = cids.shape[0]
    out = np.empty((n, centroids.shape[1]), np.float32)
    if n:
        _decode_refined(np.ascontiguousarray(cids, dtype=np.int64),
                        np.ascontiguousarray(acodes, dtype=np.uint8),
                        np.ascontiguousarray(codes, dtype=np.uint8),
                        centroids, pq, lut, out)
    return out
