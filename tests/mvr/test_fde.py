"""MUVERA FDEs against a slow per-point reference written from Google's algorithm.

The reference below follows graph-mining ``fixed_dimensional_encoding.cc`` line by
line (loops over points, float64), fed the matrices of ``mvr._fde.fde_matrices``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mvr._fde as fde_module
from mvr import FDEConfig, MultiVectors, encode_document_fdes, encode_query_fdes
from mvr._fde import fde_matrices
from mvr.errors import (
    ConfigError,
    DimensionMismatchError,
    EmptyInputError,
    InvalidVectorsError,
)

DIM = 12


# ---------------------------------------------------------------------- the reference
def _append_to_gray_code(gray_code: int, bit: bool) -> int:
    return (gray_code << 1) + (int(bit) ^ (gray_code & 1))


def _gray_code_to_binary(num: int) -> int:  # the reference's name; it is num ^ (num >> 1)
    return num ^ (num >> 1)


def _partition_index(sketch: np.ndarray) -> int:
    index = 0
    for value in sketch:
        index = _append_to_gray_code(index, value > 0)
    return index


def _distance_to_partition(sketch: np.ndarray, index: int) -> int:
    distance = 0
    binary = _gray_code_to_binary(index)
    for i in range(sketch.size - 1, -1, -1):
        distance += int(sketch[i] > 0) != (binary & 1)
        binary >>= 1
    return distance


def _projection_matrix(cfg: FDEConfig, r: int) -> np.ndarray:
    m = fde_matrices(cfg)
    if cfg.projection_dim is None:
        return np.eye(cfg.dim)
    a = np.zeros((cfg.dim, cfg.projection_dim))
    for i in range(cfg.dim):
        a[i, m.ams_index[r, i]] = m.ams_sign[r, i]
    return a


def reference_fde(points: np.ndarray, cfg: FDEConfig, document: bool) -> np.ndarray:
    """One FDE, point by point, as GenerateQuery/DocumentFixedDimensionalEncoding."""
    m = fde_matrices(cfg)
    k, n_part, d_proj = (
        cfg.num_simhash_projections,
        cfg.num_partitions,
        cfg.effective_projection_dim,
    )
    points = np.asarray(points, dtype=np.float64)
    out = np.zeros(cfg.intermediate_dim)
    for r in range(cfg.num_repetitions):
        simhash = m.simhash[:, r * k : (r + 1) * k].astype(np.float64)
        sketches = [p @ simhash for p in points]
        projected = [p @ _projection_matrix(cfg, r) for p in points]
        sizes = [0] * n_part
        for sketch, proj in zip(sketches, projected, strict=True):
            part = _partition_index(sketch) if k > 0 else 0
            start = r * n_part * d_proj + part * d_proj
            out[start : start + d_proj] += proj
            sizes[part] += 1
        if not document:
            continue
        for part in range(n_part):
            start = r * n_part * d_proj + part * d_proj
            if sizes[part] == 0:
                if cfg.fill_empty_partitions and k > 0 and len(points) > 0:
                    best, best_d = -1, 1 << 40
                    for j, sketch in enumerate(sketches):
                        d = _distance_to_partition(sketch, part)
                        if d < best_d:
                            best, best_d = j, d
                    out[start : start + d_proj] = projected[best]
                continue
            out[start : start + d_proj] /= sizes[part]
    if cfg.final_projection_dim is not None:
        final = np.zeros(cfg.final_projection_dim)
        for j, value in enumerate(out):
            final[m.final_index[j]] += m.final_sign[j] * value
        return final
    return out


# ---------------------------------------------------------------------- data
def well_conditioned(rng: np.random.Generator, lengths: list[int], cfg: FDEConfig) -> list:
    """Random token sets whose SimHash projections are all far from 0 (|s| > 1e-3), so
    float32 and float64 agree on every sign bit."""
    simhash = fde_matrices(cfg).simhash.astype(np.float64)
    items = []
    for n in lengths:
        x = rng.standard_normal((n, cfg.dim)).astype(np.float32)
        while n and simhash.size:
            bad = np.abs(x.astype(np.float64) @ simhash).min(axis=1) < 1e-3
            if not bad.any():
                break
            x[bad] = rng.standard_normal((int(bad.sum()), cfg.dim))
        items.append(x)
    return items


LENGTHS = [1, 2, 5, 9, 17, 3, 31, 1, 8, 40]


# ---------------------------------------------------------------------- equality
@pytest.mark.parametrize("final", [None, 97])
@pytest.mark.parametrize("fill", [False, True])
@pytest.mark.parametrize("projection", [None, 5])
@pytest.mark.parametrize("kind", ["query", "document"])
def test_equals_per_point_reference(kind, projection, fill, final):
    cfg = FDEConfig(
        dim=DIM,
        num_repetitions=3,
        num_simhash_projections=3,
        projection_dim=projection,
        fill_empty_partitions=fill,
        final_projection_dim=final,
        seed=11,
    )
    items = well_conditioned(np.random.default_rng(7), LENGTHS, cfg)
    if kind == "query" and fill:
        with pytest.raises(ConfigError, match="fill_empty_partitions"):
            encode_query_fdes(items, cfg)
        return
    encode = encode_document_fdes if kind == "document" else encode_query_fdes
    got = encode(items, cfg)
    assert got.shape == (len(items), cfg.output_dim)
    assert got.dtype == np.float32
    want = np.stack([reference_fde(x, cfg, kind == "document") for x in items])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_fill_is_exercised_and_changes_documents():
    """The equality test above covers fill only if some partitions are empty."""
    cfg = FDEConfig(dim=DIM, num_repetitions=3, num_simhash_projections=3, projection_dim=5)
    items = well_conditioned(np.random.default_rng(7), LENGTHS, cfg)
    filled = encode_document_fdes(items, cfg)
    plain = encode_document_fdes(items, dataclasses.replace(cfg, fill_empty_partitions=False))
    blocks = plain.reshape(len(items), -1, 5)
    assert (np.abs(blocks).sum(axis=2) == 0).any()
    assert not np.array_equal(filled, plain)


@pytest.mark.parametrize("bits", [0, 1, 6])
def test_edge_numbers_of_bits(bits):
    cfg = FDEConfig(
        dim=DIM,
        num_repetitions=2,
        num_simhash_projections=bits,
        projection_dim=4,
        fill_empty_partitions=True,
    )
    items = well_conditioned(np.random.default_rng(3), [1, 4, 13], cfg)
    want = np.stack([reference_fde(x, cfg, True) for x in items])
    np.testing.assert_allclose(encode_document_fdes(items, cfg), want, rtol=1e-5, atol=1e-5)


def test_chunked_and_threaded_path_equals_single_chunk(monkeypatch):
    cfg = FDEConfig(dim=DIM, num_repetitions=4, num_simhash_projections=3, projection_dim=6)
    items = well_conditioned(np.random.default_rng(5), [4, 0, 7, 1, 12, 3, 9] * 3, cfg)
    whole = encode_document_fdes(items, cfg)
    whole_id = encode_document_fdes(items, dataclasses.replace(cfg, projection_dim=None))
    monkeypatch.setattr(fde_module, "_CHUNK_TOKENS", 10)
    monkeypatch.setattr(fde_module, "_THREADS", 2)
    assert len(fde_module._chunks(MultiVectors.from_arrays(items).offsets, 10)) > 4
    np.testing.assert_array_equal(encode_document_fdes(items, cfg), whole)
    np.testing.assert_array_equal(
        encode_document_fdes(items, dataclasses.replace(cfg, projection_dim=None)), whole_id
    )


def test_float16_input_is_computed_in_float32():
    cfg = FDEConfig(dim=DIM, num_repetitions=2, num_simhash_projections=2)
    items = [x.astype(np.float16) for x in well_conditioned(np.random.default_rng(1), [5, 8], cfg)]
    got = encode_document_fdes(items, cfg)
    want = encode_document_fdes([x.astype(np.float32) for x in items], cfg)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)


# ---------------------------------------------------------------------- matrices, seeds, dims
def test_matrices_follow_the_documented_generators():
    cfg = FDEConfig(
        dim=DIM,
        num_repetitions=3,
        num_simhash_projections=4,
        projection_dim=6,
        final_projection_dim=50,
        seed=9,
    )
    m = fde_matrices(cfg)
    assert m.simhash.shape == (DIM, 12) and m.simhash.dtype == np.float32
    for r in range(3):
        want = np.random.default_rng(9 + r).normal(0.0, 1.0, size=(DIM, 4)).astype(np.float32)
        np.testing.assert_array_equal(m.simhash[:, 4 * r : 4 * r + 4], want)
        rng = np.random.default_rng(9 + r)
        np.testing.assert_array_equal(m.ams_index[r], rng.integers(0, 6, size=DIM))
        np.testing.assert_array_equal(m.ams_sign[r], rng.choice([-1.0, 1.0], size=DIM))
    assert m.final_index.shape == (cfg.intermediate_dim,)
    assert set(np.unique(m.final_sign)) <= {-1.0, 1.0}
    assert not m.simhash.flags.writeable
    # cached per config; fill does not change the matrices
    assert fde_matrices(dataclasses.replace(cfg, fill_empty_partitions=False)) is m


@pytest.mark.parametrize(
    ("kwargs", "dim"),
    [
        ({}, 20 * 32 * 16),
        ({"projection_dim": None}, 20 * 32 * DIM),
        ({"num_repetitions": 3, "num_simhash_projections": 2, "projection_dim": 7}, 3 * 4 * 7),
        ({"final_projection_dim": 123}, 123),
    ],
)
def test_output_dims(kwargs, dim):
    cfg = FDEConfig(dim=DIM, **kwargs)
    assert cfg.output_dim == dim
    x = [np.ones((3, DIM), np.float32)]
    assert encode_document_fdes(x, cfg).shape == (1, dim)
    q = dataclasses.replace(cfg, fill_empty_partitions=False)
    assert encode_query_fdes(x, q).shape == (1, dim)


def test_deterministic_per_seed_and_seeds_differ():
    cfg = FDEConfig(
        dim=DIM,
        num_repetitions=3,
        num_simhash_projections=3,
        projection_dim=4,
        final_projection_dim=64,
    )
    items = well_conditioned(np.random.default_rng(2), [6, 10], cfg)
    a = encode_document_fdes(items, cfg)
    fde_module._matrices_for.cache_clear()
    np.testing.assert_array_equal(encode_document_fdes(items, cfg), a)
    b = encode_document_fdes(items, dataclasses.replace(cfg, seed=cfg.seed + 1))
    assert not np.allclose(a, b)


def test_query_document_inner_product_tracks_maxsim_on_identical_sets():
    """Sanity of the pairing: a query FDE dotted with a document FDE of the same point
    set is, per repetition, sum over partitions of (sum of points) . (mean of points)."""
    cfg = FDEConfig(
        dim=DIM,
        num_repetitions=5,
        num_simhash_projections=3,
        projection_dim=None,
        fill_empty_partitions=False,
    )
    x = well_conditioned(np.random.default_rng(4), [6], cfg)
    q = encode_query_fdes(x, cfg)[0]
    d = encode_document_fdes(x, cfg)[0]
    want = 0.0
    for r in range(cfg.num_repetitions):
        s = fde_matrices(cfg).simhash[:, 3 * r : 3 * r + 3]
        parts = np.array([_partition_index(v) for v in x[0].astype(np.float64) @ s])
        for p in np.unique(parts):
            pts = x[0][parts == p].astype(np.float64)
            want += pts.sum(0) @ pts.mean(0)
    assert q @ d == pytest.approx(want, rel=1e-5)


# ---------------------------------------------------------------------- hypothesis
configs = st.builds(
    FDEConfig,
    dim=st.integers(1, 9),
    num_repetitions=st.integers(1, 3),
    num_simhash_projections=st.integers(0, 4),
    projection_dim=st.one_of(st.none(), st.integers(1, 6)),
    fill_empty_partitions=st.booleans(),
    final_projection_dim=st.one_of(st.none(), st.integers(1, 40)),
    seed=st.integers(0, 2**31),
)


@settings(max_examples=60, deadline=None)
@given(cfg=configs, lengths=st.lists(st.integers(0, 6), min_size=1, max_size=6))
def test_shapes_and_empty_documents(cfg, lengths):
    rng = np.random.default_rng(0)
    items = [rng.standard_normal((n, cfg.dim)).astype(np.float32) for n in lengths]
    docs = encode_document_fdes(items, cfg)
    queries = encode_query_fdes(items, dataclasses.replace(cfg, fill_empty_partitions=False))
    for out in (docs, queries):
        assert out.shape == (len(items), cfg.output_dim)
        assert out.dtype == np.float32
        assert np.isfinite(out).all()
        for i, n in enumerate(lengths):
            if n == 0:
                assert not out[i].any()


@settings(max_examples=40, deadline=None)
@given(cfg=configs, seed=st.integers(0, 1000))
def test_one_token_document_and_query(cfg, seed):
    cfg = dataclasses.replace(cfg, final_projection_dim=None)
    x = np.random.default_rng(seed).standard_normal((1, cfg.dim)).astype(np.float32)
    n_part, d_proj = cfg.num_partitions, cfg.effective_projection_dim
    doc = encode_document_fdes([x], cfg)[0].reshape(cfg.num_repetitions, n_part, d_proj)
    query = encode_query_fdes([x], dataclasses.replace(cfg, fill_empty_partitions=False))[0]
    query = query.reshape(cfg.num_repetitions, n_part, d_proj)
    for r in range(cfg.num_repetitions):
        y = x.astype(np.float64)[0] @ _projection_matrix(cfg, r)
        # the query holds the point in exactly one partition
        nonzero = [p for p in range(n_part) if query[r, p].any()]
        assert len(nonzero) <= 1
        np.testing.assert_allclose(query[r].sum(axis=0), y, rtol=1e-5, atol=1e-6)
        # a document with fill holds it in every partition; without, in its own only
        if cfg.fill_empty_partitions or n_part == 1:
            np.testing.assert_allclose(doc[r], np.tile(y, (n_part, 1)), rtol=1e-5, atol=1e-6)
        else:
            np.testing.assert_allclose(doc[r], query[r], rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------- bad input
def test_bad_input_raises_precise_errors():
    cfg = FDEConfig(dim=DIM, num_repetitions=2, num_simhash_projections=2)
    good = np.ones((3, DIM), np.float32)
    with pytest.raises(DimensionMismatchError, match=f"expected dim {DIM}, got 5"):
        encode_document_fdes([good, np.ones((2, 5), np.float32)], cfg)
    with pytest.raises(DimensionMismatchError, match=f"expected dim {DIM}, got 7"):
        encode_document_fdes(MultiVectors.from_arrays([np.ones((2, 7))]), cfg)
    bad = good.copy()
    bad[1, 2] = np.nan
    with pytest.raises(InvalidVectorsError, match="item 1, token 1"):
        encode_document_fdes([good, bad], cfg)
    with pytest.raises(InvalidVectorsError, match="2-D"):
        encode_document_fdes([np.ones(DIM, np.float32)], cfg)
    with pytest.raises(InvalidVectorsError, match="single item"):
        encode_document_fdes(good, cfg)
    with pytest.raises(EmptyInputError, match="empty batch"):
        encode_document_fdes(MultiVectors.empty(DIM), cfg)
    with pytest.raises(ConfigError, match="fill_empty_partitions=False"):
        encode_query_fdes([good], cfg)
    with pytest.raises(ConfigError, match="FDEConfig"):
        encode_document_fdes([good], {"dim": DIM})


# ---------------------------------------------------------------------- retrieval quality
def clustered_collection(rng, n_docs=800, n_queries=40, dim=32, n_topics=40):
    """Documents of 20-50 tokens drawn around a few topic centres each; queries of 6-12
    noisy tokens taken from one document. Unit-normalised."""
    centres = rng.standard_normal((n_topics, dim))

    def unit(a):
        return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)

    docs = []
    for _ in range(n_docs):
        topics = rng.choice(n_topics, size=3, replace=False)
        n = int(rng.integers(20, 51))
        docs.append(unit(centres[rng.choice(topics, n)] + 0.7 * rng.standard_normal((n, dim))))
    queries = []
    for _ in range(n_queries):
        src = docs[int(rng.integers(n_docs))]
        n = int(rng.integers(6, 13))
        pick = src[rng.choice(len(src), n)]
        queries.append(unit(pick + 0.4 * rng.standard_normal(pick.shape)))
    return queries, docs


def exact_maxsim(queries, docs):
    """Exact late interaction with plain numpy. Shape: (n_queries, n_docs)."""
    flat = np.concatenate(docs).astype(np.float64)
    starts = np.r_[0, np.cumsum([len(d) for d in docs])[:-1]]
    scores = np.empty((len(queries), len(docs)))
    for i, q in enumerate(queries):
        sim = q.astype(np.float64) @ flat.T  # (query tokens, all document tokens)
        scores[i] = np.maximum.reduceat(sim, starts, axis=1).sum(axis=0)
    return scores


def recall_at(exact, approx, k=10, n=100):
    hits = 0
    for e, a in zip(exact, approx, strict=True):
        hits += len(set(np.argsort(-e)[:k]) & set(np.argsort(-a)[:n]))
    return hits / (k * len(exact))


def test_fde_ranks_exact_maxsim_top10_like_the_reference():
    """Candidate recall of the exact-MaxSim top-10 in the FDE top-100 on clustered data:
    far above chance (100 / 800 = 0.125; measured 0.90-0.92 over seeds) and, on a
    sub-collection, as good as the slow per-point reference's (to one hit)."""
    rng = np.random.default_rng(0)
    queries, docs = clustered_collection(rng)
    exact = exact_maxsim(queries, docs)
    cfg = FDEConfig(dim=32, num_repetitions=10, num_simhash_projections=3, projection_dim=None)
    qcfg = dataclasses.replace(cfg, fill_empty_partitions=False)
    approx = encode_query_fdes(queries, qcfg) @ encode_document_fdes(docs, cfg).T
    recall = recall_at(exact, approx)
    assert recall >= 0.85, recall
    sub = np.arange(0, len(docs), 4)  # the reference loops over points: 200 documents
    ref_docs = np.stack([reference_fde(docs[i], cfg, True) for i in sub])
    ref_queries = np.stack([reference_fde(q, qcfg, False) for q in queries])
    ref_recall = recall_at(exact[:, sub], ref_queries @ ref_docs.T, k=10, n=25)
    mvr_recall = recall_at(exact[:, sub], approx[:, sub], k=10, n=25)
    assert mvr_recall >= ref_recall - 1 / (10 * len(queries)), (mvr_recall, ref_recall)


def test_fde_recall_at_least_muvera_python():
    """The same recall against an independent implementation, muvera-python 0.2.0 (bench
    extra), same parameters, averaged over three seeds. Its document fill measures the
    Hamming distance against another bit pattern than the reference, so the encodings
    differ slightly; measured means 0.923 (mvr) vs 0.917."""
    muvera = pytest.importorskip("muvera")
    rng = np.random.default_rng(1)
    queries, docs = clustered_collection(rng)
    exact = exact_maxsim(queries, docs)
    ours, theirs = [], []
    for seed in range(3):
        cfg = FDEConfig(
            dim=32, num_repetitions=10, num_simhash_projections=3, projection_dim=None, seed=seed
        )
        qcfg = dataclasses.replace(cfg, fill_empty_partitions=False)
        ours.append(
            recall_at(exact, encode_query_fdes(queries, qcfg) @ encode_document_fdes(docs, cfg).T)
        )
        peer = muvera.Muvera(
            num_repetitions=10,
            num_simhash_projections=3,
            dimension=32,
            projection_type="identity",
            seed=seed,
        )
        theirs.append(
            recall_at(exact, peer.encode_queries(queries) @ peer.encode_documents(docs).T)
        )
    assert np.mean(ours) >= np.mean(theirs) - 0.02, (ours, theirs)
