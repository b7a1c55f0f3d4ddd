"""Exact MaxSim against a brute-force loop over raw vectors."""

from __future__ import annotations

import numpy as np
import pytest

import mvr
from mvr import MultiVectors, maxsim, maxsim_candidates
from mvr.errors import DimensionMismatchError, EmptyInputError, InvalidVectorsError


def _ragged(rng: np.random.Generator, n: int, lo: int, hi: int, dim: int, shift: float = 0.0):
    return [
        (rng.standard_normal((int(rng.integers(lo, hi + 1)), dim)) + shift).astype(np.float32)
        for _ in range(n)
    ]


def _brute(queries, documents) -> np.ndarray:
    """Obviously correct: per pair, every token dot product, max per query token, sum (float64)."""
    out = np.zeros((len(queries), len(documents)))
    for i, q in enumerate(queries):
        for j, d in enumerate(documents):
            sims = np.asarray(q, np.float64) @ np.asarray(d, np.float64).T  # (t_q, t_d)
            out[i, j] = sims.max(axis=1).sum()
    return out


def test_matches_brute_force_ragged() -> None:
    rng = np.random.default_rng(0)
    queries = _ragged(rng, 6, 1, 20, 16)
    documents = _ragged(rng, 40, 1, 50, 16)
    got = maxsim(queries, documents)
    assert got.shape == (6, 40) and got.dtype == np.float32
    np.testing.assert_allclose(got, _brute(queries, documents), rtol=1e-5, atol=1e-4)


def test_negative_similarities_padding_never_wins() -> None:
    # Every dot product is negative: a zero-padded token (dot 0) would win every max.
    rng = np.random.default_rng(1)
    direction = rng.standard_normal(8)
    queries = [np.abs(rng.standard_normal((t, 8))) * np.sign(direction) for t in (3, 7)]
    documents = [-np.abs(rng.standard_normal((t, 8))) * np.sign(direction) for t in (1, 9, 4, 30)]
    queries = [q.astype(np.float32) for q in queries]
    documents = [d.astype(np.float32) for d in documents]
    want = _brute(queries, documents)
    assert (want < 0).all()
    np.testing.assert_allclose(maxsim(queries, documents), want, rtol=1e-5, atol=1e-4)
    flat = maxsim_candidates(queries, documents, [0, 1, 4])
    np.testing.assert_allclose(flat, [want[0, 0], want[1, 1], want[1, 2], want[1, 3]], rtol=1e-5)


def test_blocks_across_many_documents_and_long_queries(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tiny chunks and query blocks force the chunking and query blocking paths,
    # including items longer than a block; float16 goes through the chunk buffer.
    from mvr import _maxsim

    monkeypatch.setattr(_maxsim, "_CHUNK_BYTES", 4 * 4 * 7)  # 6-row chunks
    monkeypatch.setattr(_maxsim, "_QUERY_BLOCK_BYTES", 4 * 4 * 9)  # ~9 rows per query block
    rng = np.random.default_rng(2)
    queries = _ragged(rng, 9, 1, 12, 4, shift=-0.3)
    documents = _ragged(rng, 70, 1, 400, 4, shift=0.2)
    want = _brute(queries, documents)
    np.testing.assert_allclose(maxsim(queries, documents), want, rtol=1e-5, atol=1e-4)
    cand = np.array([0, 10, 10, 40, 41, 41, 50, 60, 65, 70])
    got = maxsim_candidates(queries, documents, cand)
    expect = np.concatenate([want[q, cand[q] : cand[q + 1]] for q in range(9)])
    np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-4)
    halves = [d.astype(np.float16) for d in documents]
    want16 = _brute(queries, halves)
    np.testing.assert_allclose(maxsim(queries, halves), want16, rtol=1e-5, atol=1e-3)
    got16 = maxsim_candidates(queries, halves, cand)
    expect16 = np.concatenate([want16[q, cand[q] : cand[q + 1]] for q in range(9)])
    np.testing.assert_allclose(got16, expect16, rtol=1e-5, atol=1e-3)


def test_float16_inputs_accumulate_in_float32() -> None:
    rng = np.random.default_rng(3)
    queries = [q.astype(np.float16) for q in _ragged(rng, 4, 1, 32, 64)]
    documents = [d.astype(np.float16) for d in _ragged(rng, 25, 1, 90, 64)]
    # subnormal, zero and signed-zero halves go through the conversion too
    documents[0][0, :4] = np.array([6e-8, -6e-8, 0.0, -0.0], np.float16)
    want = _brute(queries, documents)  # the float16 values, exactly, in float64
    got = maxsim(MultiVectors.from_arrays(queries), MultiVectors.from_arrays(documents))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)
    mixed = maxsim([q.astype(np.float32) for q in queries], documents)
    np.testing.assert_allclose(mixed, want, rtol=1e-5, atol=1e-3)


def test_f16_conversion_is_exact_for_every_half() -> None:
    from mvr._maxsim import _f16_to_f32

    bits = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    halves = bits.view(np.float16)
    finite = np.isfinite(halves)
    out = np.empty(int(finite.sum()), np.float32)
    _f16_to_f32(bits[finite], out)
    assert np.array_equal(out.view(np.uint32), halves[finite].astype(np.float32).view(np.uint32))


def test_candidates_form_matches_all_pairs() -> None:
    rng = np.random.default_rng(4)
    queries = MultiVectors.from_arrays(_ragged(rng, 5, 2, 10, 12))
    pool = _ragged(rng, 30, 1, 40, 12)
    picks = [rng.choice(30, size=k, replace=False) for k in (3, 0, 30, 1, 7)]
    documents = [pool[j] for p in picks for j in p]
    cand = np.concatenate([[0], np.cumsum([len(p) for p in picks])])
    full = maxsim(queries, pool)
    got = maxsim_candidates(queries, documents, cand)
    expect = np.concatenate([full[q, p] for q, p in enumerate(picks)])
    assert got.shape == (len(documents),) and got.dtype == np.float32
    np.testing.assert_allclose(got, expect, rtol=1e-6, atol=1e-5)


def test_empty_document_batch_gives_empty_scores() -> None:
    q = [np.ones((2, 3), np.float32)]
    assert maxsim(q, []).shape == (1, 0)
    assert maxsim_candidates(q, MultiVectors.empty(3), [0, 0]).shape == (0,)


def test_exported_from_mvr() -> None:
    assert mvr.maxsim is maxsim and "maxsim_candidates" in mvr.__all__


def test_dim_mismatch_names_both() -> None:
    with pytest.raises(DimensionMismatchError, match=r"dim 5 .* dim 4"):
        maxsim([np.ones((2, 4), np.float32)], [np.ones((3, 5), np.float32)])


@pytest.mark.parametrize("which", ["query", "document"])
def test_zero_token_item_names_its_index(which: str) -> None:
    ok = [np.ones((2, 4), np.float32)] * 3
    bad = [ok[0], ok[0], np.zeros((0, 4), np.float32)]
    args = (bad, ok) if which == "query" else (ok, bad)
    with pytest.raises(EmptyInputError, match=rf"{which} 2 has 0 tokens"):
        maxsim(*args)


def test_no_queries_is_an_error() -> None:
    with pytest.raises(EmptyInputError):
        maxsim(MultiVectors.empty(4), [np.ones((2, 4), np.float32)])


def test_non_finite_and_non_2d_inputs() -> None:
    bad = np.ones((2, 4), np.float32)
    bad[1, 2] = np.nan
    with pytest.raises(InvalidVectorsError, match="non-finite"):
        maxsim([np.ones((2, 4), np.float32)], [bad])
    with pytest.raises(InvalidVectorsError, match="2-D"):
        maxsim([np.ones(4, np.float32)], [np.ones((2, 4), np.float32)])


@pytest.mark.parametrize(
    ("offsets", "match"),
    [
        ([0, 2], r"shape \(3,\)"),
        ([0, 1, 3], r"candidate_offsets\[-1\] == len\(documents\) == 2, got 3"),
        ([1, 2, 2], r"candidate_offsets\[0\] == 0, got 1"),
        ([0.0, 1.0, 2.0], "integer dtype"),
    ],
)
def test_bad_candidate_offsets(offsets, match: str) -> None:
    q = [np.ones((2, 4), np.float32)] * 2
    d = [np.ones((1, 4), np.float32)] * 2
    with pytest.raises(InvalidVectorsError, match=match):
        maxsim_candidates(q, d, offsets)


def test_decreasing_candidate_offsets() -> None:
    q = [np.ones((2, 4), np.float32)] * 3
    d = [np.ones((1, 4), np.float32)] * 2
    with pytest.raises(InvalidVectorsError, match="non-decreasing"):
        maxsim_candidates(q, d, [0, 2, 1, 2])


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("dim", [1, 13, 384])
def test_rerank_every_tile_remainder_and_padding(dtype, dim: int) -> None:
    # Query lengths 1..9 exercise the zero query rows that pad to a tile of 4;
    # document lengths 1..8 every remainder of the 3-row tiles, 1-token documents
    # included; dims below, at and off the SIMD width.
    rng = np.random.default_rng(10 + dim)
    queries = [rng.standard_normal((t, dim)).astype(np.float32) for t in range(1, 10)]
    lengths = [int(x) for x in rng.permutation(np.tile(np.arange(1, 9), 4))]
    documents = [rng.standard_normal((t, dim)).astype(dtype) for t in lengths]
    cand = np.linspace(0, len(documents), len(queries) + 1).astype(np.int64)
    want = _brute(queries, documents)
    expect = np.concatenate([want[q, cand[q] : cand[q + 1]] for q in range(len(queries))])
    tol = dict(rtol=1e-5, atol=1e-3 * np.sqrt(dim))
    np.testing.assert_allclose(maxsim_candidates(queries, documents, cand), expect, **tol)
    np.testing.assert_allclose(maxsim(queries, documents), want, **tol)
    q16 = [q.astype(np.float16) for q in queries]
    np.testing.assert_allclose(maxsim(q16, documents), _brute(q16, documents), **tol)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_rerank_negative_similarities_at_scale(dtype) -> None:
    # 384-d, ~120-token candidates, every dot product negative: a padded row (0)
    # or a zero-initialised max would win; -inf and unpadded documents cannot.
    rng = np.random.default_rng(11)
    sign = np.sign(rng.standard_normal(384))
    query = (np.abs(rng.standard_normal((23, 384))) * sign).astype(np.float32)
    lengths = [1, 2, 3, 119, 120, 121, 250]
    documents = [(-np.abs(rng.standard_normal((t, 384))) * sign).astype(dtype) for t in lengths]
    want = _brute([query], documents)[0]
    assert (want < 0).all()
    got = maxsim_candidates([query], documents, [0, len(documents)])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-2)


def test_rerank_empty_query_is_refused() -> None:
    q = [np.ones((2, 4), np.float32), np.zeros((0, 4), np.float32)]
    with pytest.raises(EmptyInputError, match="query 1 has 0 tokens"):
        maxsim_candidates(q, [np.ones((1, 4), np.float16)], [0, 1, 1])


def test_rerank_concurrent_threads_agree() -> None:
    # The kernel releases the GIL and float16 chunk buffers are per thread.
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(12)
    queries = _ragged(rng, 8, 5, 30, 64)
    documents = MultiVectors.from_arrays(
        [d.astype(np.float16) for d in _ragged(rng, 80, 1, 300, 64)]
    )
    cand = np.linspace(0, 80, 9).astype(np.int64)
    want = maxsim_candidates(queries, documents, cand)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: maxsim_candidates(queries, documents, cand), range(8)))
    for got in results:
        np.testing.assert_array_equal(got, want)


def test_rerank_non_contiguous_float32_documents() -> None:
    # Float32 rows decoded elsewhere may arrive as a strided view.
    rng = np.random.default_rng(13)
    wide = rng.standard_normal((50, 32)).astype(np.float32)
    documents = MultiVectors(wide[:, ::2], np.array([0, 1, 20, 50]))
    queries = [rng.standard_normal((5, 16)).astype(np.float32)]
    want = _brute(queries, [documents[i] for i in range(3)])[0]
    np.testing.assert_allclose(
        maxsim_candidates(queries, documents, [0, 3]), want, rtol=1e-5, atol=1e-4
    )


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_rerank_lane_blocks_and_row_tails(dtype) -> None:
    # Query lengths around the tiles' lane count (one, two and three blocks of query
    # rows, with and without zero lanes) and document lengths 1..20, so every tail of
    # the row tiles (ROWS, 4 and 1 rows) follows a full tile; all-pairs blocks of
    # several queries share lane blocks across query boundaries.
    from mvr._maxsim_tiles import LANES

    rng = np.random.default_rng(31)
    lengths_q = sorted({1, 2, LANES - 1, LANES, LANES + 1, 2 * LANES + 3, 70})
    queries = [rng.standard_normal((t, 24)).astype(np.float32) for t in lengths_q]
    documents = [rng.standard_normal((t, 24)).astype(dtype) for t in range(1, 21)]
    want = _brute(queries, documents)
    tol = dict(rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(maxsim(queries, documents), want, **tol)
    cand = np.linspace(0, len(documents), len(queries) + 1).astype(np.int64)
    expect = np.concatenate([want[q, cand[q] : cand[q + 1]] for q in range(len(queries))])
    np.testing.assert_allclose(maxsim_candidates(queries, documents, cand), expect, **tol)


def test_tiles_for_a_cpu_without_avx512(tmp_path) -> None:
    """The tile shape is picked for the CPU numba compiles for: on AVX-512 hosts the
    32-lane tiles, elsewhere 24 lanes x 4 rows. On an AVX-512 host the AVX2 shape is
    checked too, in a subprocess compiling for a Haswell target, against the same brute
    force (an AVX2 host cannot run AVX-512 code: there the subprocess checks its own)."""
    import os
    import subprocess
    import sys

    from mvr._maxsim_tiles import host_has_avx512

    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    if host_has_avx512():
        env.update(NUMBA_CPU_NAME="haswell", NUMBA_CPU_FEATURES="+avx,+avx2,+fma,+f16c,+sse4.2")
    code = (
        "import numpy as np\n"
        "from mvr import maxsim\n"
        "from mvr._maxsim_tiles import LANES, ROWS\n"
        "rng = np.random.default_rng(5)\n"
        "q = [rng.standard_normal((t, 40)).astype(np.float32) for t in (1, 23, 24, 25, 50)]\n"
        "d = [rng.standard_normal((t, 40)).astype(np.float16) for t in range(1, 14)]\n"
        "got = maxsim(q, d)\n"
        "want = np.array([[(a.astype(np.float64) @ b.astype(np.float64).T).max(1).sum()"
        " for b in d] for a in q])\n"
        "print(LANES, ROWS, float(np.abs(got - want).max()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lanes, rows, err = out.stdout.split()
    if host_has_avx512():
        assert (lanes, rows) == ("24", "4")
    assert float(err) < 1e-3
