"""The precomputed-vectors format: round trips in every container, lookup, pairs, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import encoders
from mvr import MultiVectors
from mvr.errors import (
    DimensionMismatchError,
    DocumentNotFoundError,
    FormatVersionError,
    InvalidInputError,
    ModelFileNotFoundError,
)


def _random_mv(rng, n, dim=8, dtype=np.float32):
    lengths = rng.integers(0, 6, size=n)
    arrays = [rng.standard_normal((t, dim)).astype(dtype) for t in lengths]
    return MultiVectors.from_arrays(arrays, dim=dim, dtype=dtype)


@pytest.mark.parametrize("suffix", [".zarr", ".npz"])
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_round_trip(tmp_path, suffix, dtype):
    rng = np.random.default_rng(0)
    mv = _random_mv(rng, 9, dtype=dtype)
    ids = [f"d{i}" for i in range(9)]
    texts = [f"text number {i}" for i in range(9)]
    ident = {"name": "x", "config": {"dim": 8}, "weights_sha256": "0" * 64}
    path = encoders.save_precomputed(tmp_path / f"t{suffix}", ids, mv, texts, identity=ident)
    got_ids, got, got_texts, meta = encoders.read_precomputed(path)
    assert got_ids == ids and got_texts == texts and meta["identity"] == ident
    assert got.dtype == dtype and meta["format_version"] == 1
    np.testing.assert_array_equal(got.offsets, mv.offsets)
    np.testing.assert_array_equal(got.vectors, mv.vectors)
    enc = encoders.load(path)
    assert enc.identity == ident and enc.dim == 8
    # lookup by id, by stored text, in the order asked, repeated
    picked = enc.encode_documents(["d3", "text number 1", "d3", "d0"])
    for j, i in enumerate([3, 1, 3, 0]):
        np.testing.assert_array_equal(picked[j], mv[i])
    assert len(enc.encode_queries([])) == 0


def test_npy_directory_written_elsewhere(tmp_path):
    rng = np.random.default_rng(1)
    mv = _random_mv(rng, 5)
    d = tmp_path / "vecs"
    d.mkdir()
    np.save(d / "vectors.npy", mv.vectors)
    np.save(d / "offsets.npy", mv.offsets)
    np.save(d / "ids.npy", np.array(["a", "b", "c", "d", "e"]))
    enc = encoders.load(d)
    np.testing.assert_array_equal(enc.encode_queries(["e"])[0], mv[4])
    assert enc.identity["name"] == "precomputed"  # no recorded identity: content digest
    assert len(enc.identity["weights_sha256"]) == 64


def test_pair_directory_uses_both_tables(tmp_path):
    rng = np.random.default_rng(2)
    docs, queries = _random_mv(rng, 4), _random_mv(rng, 3)
    encoders.save_precomputed(tmp_path / "documents.zarr", ["x", "y", "z", "w"], docs)
    encoders.save_precomputed(tmp_path / "queries.npz", ["x", "q2", "q3"], queries)
    enc = encoders.load(tmp_path)
    np.testing.assert_array_equal(enc.encode_documents(["x"])[0], docs[0])
    np.testing.assert_array_equal(enc.encode_queries(["x"])[0], queries[0])
    with pytest.raises(DocumentNotFoundError, match="'q2'"):
        enc.encode_documents(["q2"])


def test_lookup_of_many_reads_whole_table(tmp_path):
    rng = np.random.default_rng(3)
    mv = _random_mv(rng, 50)
    ids = [str(i) for i in range(50)]
    enc = encoders.load(encoders.save_precomputed(tmp_path / "t.zarr", ids, mv))
    order = rng.permutation(50)
    got = enc.encode_documents([ids[i] for i in order])
    expected = mv.take(order)
    np.testing.assert_array_equal(got.offsets, expected.offsets)
    np.testing.assert_array_equal(got.vectors, expected.vectors)


def test_bad_inputs(tmp_path):
    rng = np.random.default_rng(4)
    mv = _random_mv(rng, 3)
    with pytest.raises(DimensionMismatchError, match="3 items, 2 ids"):
        encoders.save_precomputed(tmp_path / "a.zarr", ["a", "b"], mv)
    with pytest.raises(InvalidInputError, match="'a' occurs more than once"):
        encoders.save_precomputed(tmp_path / "a.zarr", ["a", "b", "a"], mv)
    with pytest.raises(InvalidInputError, match="item 1"):
        encoders.save_precomputed(tmp_path / "a.zarr", ["a", 2, "c"], mv)
    path = encoders.save_precomputed(tmp_path / "a.npz", ["a", "b", "c"], mv)
    enc = encoders.load(path)
    with pytest.raises(DocumentNotFoundError, match="2 of 3 keys"):
        enc.encode_documents(["a", "zz", "yy"])
    with pytest.raises(InvalidInputError):
        enc.encode_documents(["a", 5])
    with pytest.raises(Exception, match="take no options"):
        encoders.load(path, batch_size=3)


def test_unknown_version_and_incomplete(tmp_path):
    rng = np.random.default_rng(5)
    path = encoders.save_precomputed(tmp_path / "t.zarr", ["a"], _random_mv(rng, 1))
    zarr_json = path / "zarr.json"
    meta = json.loads(zarr_json.read_text())
    meta["attributes"]["mvr_precomputed"]["format_version"] = 99
    zarr_json.write_text(json.dumps(meta))
    with pytest.raises(FormatVersionError, match="got 99"):
        encoders.load(path)
    d = tmp_path / "npy"
    d.mkdir()
    np.save(d / "vectors.npy", np.zeros((2, 4), np.float32))
    np.save(d / "offsets.npy", np.array([0, 2]))
    with pytest.raises(ModelFileNotFoundError, match="'ids'"):
        encoders.load(d)


@settings(max_examples=15, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 5), min_size=0, max_size=12),
    suffix=st.sampled_from([".zarr", ".npz"]),
)
def test_round_trip_property(tmp_path_factory, lengths, suffix):
    rng = np.random.default_rng(len(lengths))
    arrays = [rng.standard_normal((t, 3)).astype(np.float32) for t in lengths]
    mv = MultiVectors.from_arrays(arrays, dim=3)
    ids = [f"id-{i}-é" for i in range(len(lengths))]
    path = tmp_path_factory.mktemp("rt") / f"t{suffix}"
    encoders.save_precomputed(path, ids, mv)
    got_ids, got, texts, meta = encoders.read_precomputed(path)
    assert got_ids == ids and texts is None and meta["count"] == len(lengths)
    np.testing.assert_array_equal(got.offsets, mv.offsets)
    np.testing.assert_array_equal(got.vectors, mv.vectors)
