import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mvr import FDEConfig, PoolingConfig
from mvr.errors import ConfigError, TokenReadError
from mvr.format import aligned_offsets, decode_record, encode_records, record_nbytes


def test_fde_output_dim():
    assert FDEConfig(dim=128).output_dim == 20 * 32 * 16
    assert FDEConfig(dim=128, projection_dim=None, num_repetitions=2).output_dim == 2 * 32 * 128
    assert FDEConfig(dim=128, final_projection_dim=1024).output_dim == 1024


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"dim": 0}, "dim: expected a positive int, got 0"),
        ({"dim": 8, "num_repetitions": -1}, "num_repetitions"),
        ({"dim": 8, "num_simhash_projections": 31}, r"\[0, 30\], got 31"),
        ({"dim": 8, "projection_dim": 0}, "projection_dim"),
        ({"dim": 8, "final_projection_dim": 2.5}, "final_projection_dim"),
        ({"dim": 8, "seed": "x"}, "seed"),
    ],
)
def test_fde_config_validation(kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        FDEConfig(**kwargs)


def test_config_dict_round_trip_refuses_unknown_keys():
    cfg = FDEConfig(dim=64, num_repetitions=3, final_projection_dim=100)
    assert FDEConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match=r"unknown keys \['bogus'\]"):
        FDEConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    p = PoolingConfig(pool_factor=3, protected_tokens=1)
    assert PoolingConfig.from_dict(p.to_dict()) == p
    with pytest.raises(ConfigError, match="pool_factor"):
        PoolingConfig(pool_factor=0)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(0, 7), min_size=1, max_size=6),
    st.integers(1, 9),
    st.sampled_from(["float16", "int8"]),
    st.sampled_from([1, 8, 4096]),
)
def test_records_round_trip(lengths, dim, dtype, alignment):
    rng = np.random.default_rng(0)
    total = sum(lengths)
    vectors = rng.standard_normal((total, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    records = encode_records(vectors, np.array(lengths), dtype)
    sizes = np.array([len(r) for r in records])
    np.testing.assert_array_equal(sizes, record_nbytes(np.array(lengths), dim, dtype))
    offs = aligned_offsets(sizes, alignment)
    assert np.all(offs % alignment == 0)
    blob = bytearray(int(offs[-1]))
    for o, r in zip(offs[:-1], records, strict=True):
        blob[o : o + len(r)] = r
    pos = 0
    tol = 1e-3 if dtype == "float16" else 1.0 / 127 + 1e-6
    for i, n in enumerate(lengths):
        got = decode_record(memoryview(blob)[offs[i] : offs[i] + sizes[i]], n, dim, dtype)
        np.testing.assert_allclose(got, vectors[pos : pos + n], atol=tol)
        pos += n


def test_short_record_is_named():
    rec = encode_records(np.ones((2, 4), np.float32), np.array([2]), "float16")[0]
    with pytest.raises(TokenReadError, match=r"doc 7 in tokens.bin: short read, expected 16 bytes, got 10"):
        decode_record(rec[:10], 2, 4, "float16", what="doc 7 in tokens.bin")
    with pytest.raises(ConfigError, match="table dtype"):
        record_nbytes(3, 4, "float64")


def test_codec_iterations_round_trip_and_old_configs():
    from mvr import IndexConfig

    cfg = IndexConfig(codec_iterations=3)
    assert IndexConfig.from_dict(cfg.to_dict()).codec_iterations == 3
    # a config recorded before the setting was trained with faiss's 10 iterations
    old = {k: v for k, v in IndexConfig().to_dict().items() if k != "codec_iterations"}
    assert IndexConfig.from_dict(old).codec_iterations == 10
    with pytest.raises(ConfigError, match="codec_iterations: expected an int >= 1, got 0"):
        IndexConfig(codec_iterations=0)


def test_build_trains_the_codec_with_the_configured_iterations():
    from indexing._build import train_token_codec
    from mvr import IndexConfig

    x = np.random.default_rng(0).standard_normal((2048, 16)).astype(np.float32)
    for n in (1, 7):
        cfg = IndexConfig(codec_centroids=16, codec_iterations=n, approx_pq=4)
        codec = train_token_codec([x[:1000], x[1000:]], cfg)
        assert codec._index.cp.niter == n
        assert codec.approx.pq.cp.niter == n
