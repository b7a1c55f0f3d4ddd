"""Pick OpenBLAS's AVX-512 kernels on AMD CPUs that it does not recognise.

OpenBLAS chooses its kernels from the CPU model at load time. On an AMD EPYC of family 26
(Zen 5, AVX-512), numpy's OpenBLAS (0.3.31) picks its SkylakeX kernels, but the older one
bundled with faiss-cpu (0.3.15) does not know the model and falls back to **Barcelona**
(2007, SSE) kernels: faiss's nearest-centroid search (the token codec's assignment, most of
a build's write stage) took 3.32 CPU-s per 50,000 tokens on one core there, 1.42 s with
the Haswell (AVX2) kernels and 0.74 s with SkylakeX; numpy's sgemm runs 223 GFLOP/s with
SkylakeX, 120 with Haswell (``scripts/bench_blas_kernels.py``, BENCHMARKS.md).

:func:`tune_openblas` sets that variable when it is unset, the CPU is AMD and it has the
AVX-512 subsets the SkylakeX kernels use; it must run before numpy or faiss load OpenBLAS
(``import mvr`` runs it first, and ``encoders``, ``indexing`` and ``serving`` import mvr
before numpy). Intel CPUs are left alone (OpenBLAS knows them), as is any value the user
set (``OPENBLAS_CORETYPE=Haswell`` keeps the AVX2 kernels). Standard library only.
"""

from __future__ import annotations

import os

__all__ = ["openblas_coretype_for", "tune_openblas"]

# what OpenBLAS's SkylakeX kernels execute
_AVX512 = ("avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl")


def openblas_coretype_for(cpuinfo: str) -> str | None:
    """The ``OPENBLAS_CORETYPE`` to set for the CPU that ``cpuinfo`` (the text of
    ``/proc/cpuinfo``) describes: for an AMD CPU ``"SkylakeX"`` with AVX-512, ``"Haswell"``
    with AVX2 and FMA only; None otherwise (Intel, or older AMD)."""
    vendor, flags = "", set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "vendor_id" and not vendor:
            vendor = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
        if vendor and flags:
            break
    if vendor != "AuthenticAMD":
        return None
    if all(f in flags for f in _AVX512):
        return "SkylakeX"
    if "avx2" in flags and "fma" in flags:  # OpenBLAS's Zen kernels are its Haswell ones
        return "Haswell"
    return None


def tune_openblas(cpuinfo_path: str = "/proc/cpuinfo") -> str | None:
    """Set ``OPENBLAS_CORETYPE`` (see the module docstring) unless it is set already;
    returns the value set, or None."""
    if "OPENBLAS_CORETYPE" in os.environ:
        return None
    try:
        with open(cpuinfo_path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:  # not Linux: OpenBLAS's own choice stands
        return None
    coretype = openblas_coretype_for(text)
    if coretype is not None:
        os.environ["OPENBLAS_CORETYPE"] = coretype
    return coretype
