"""mvr picks OpenBLAS's kernels on AMD CPUs before numpy or faiss load OpenBLAS."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mvr._cpu_blas import openblas_coretype_for, tune_openblas

ROOT = Path(__file__).resolve().parents[2]


def _cpuinfo(vendor: str, flags: str) -> str:
    return (f"processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: 26\nflags\t\t: {flags}\n\n"
            f"processor\t: 1\nvendor_id\t: {vendor}\nflags\t\t: sse sse2\n")


def test_coretype_follows_vendor_and_flags() -> None:
    avx512 = "fpu sse2 avx avx2 fma avx512f avx512cd avx512bw avx512dq avx512vl avx512_bf16"
    assert openblas_coretype_for(_cpuinfo("AuthenticAMD", avx512)) == "SkylakeX"
    assert openblas_coretype_for(_cpuinfo("AuthenticAMD", "sse2 avx avx2 fma")) == "Haswell"
    # one AVX-512 subset missing: the SkylakeX kernels would not run
    assert openblas_coretype_for(_cpuinfo("AuthenticAMD", avx512.replace(" avx512vl", ""))) == "Haswell"
    assert openblas_coretype_for(_cpuinfo("AuthenticAMD", "sse2 avx")) is None
    assert openblas_coretype_for(_cpuinfo("GenuineIntel", avx512)) is None  # OpenBLAS knows Intel
    assert openblas_coretype_for("") is None


def test_tune_keeps_a_value_the_user_set(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    info = tmp_path / "cpuinfo"
    info.write_text(_cpuinfo("AuthenticAMD", "avx2 fma avx512f avx512cd avx512bw avx512dq avx512vl"))
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    assert tune_openblas(str(info)) is None and os.environ["OPENBLAS_CORETYPE"] == "Haswell"
    monkeypatch.delenv("OPENBLAS_CORETYPE")
    assert tune_openblas(str(info)) == "SkylakeX" and os.environ["OPENBLAS_CORETYPE"] == "SkylakeX"
    monkeypatch.delenv("OPENBLAS_CORETYPE")
    assert tune_openblas(str(tmp_path / "missing")) is None and "OPENBLAS_CORETYPE" not in os.environ


def test_importing_a_stage_sets_it_before_numpy_loads_openblas() -> None:
    """In a fresh interpreter without the variable, ``import indexing`` (which imports numpy
    and faiss) leaves both OpenBLAS copies on the kernels this CPU's /proc/cpuinfo calls for."""
    try:
        expected = openblas_coretype_for(Path("/proc/cpuinfo").read_text())
    except OSError:
        expected = None
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    code = ("import os, indexing, numpy, faiss\n"
            "from threadpoolctl import threadpool_info\n"
            "print(os.environ.get('OPENBLAS_CORETYPE'))\n"
            "print(sorted({i.get('architecture') for i in threadpool_info()"
            " if i.get('internal_api') == 'openblas'}))\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True,
                         text=True, check=True, timeout=120).stdout.split("\n")
    assert out[0] == str(expected)
    if expected is not None:
        assert out[1] == str([expected])
