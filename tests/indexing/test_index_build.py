"""Streaming build: format round trip, crash + resume at every stage, input validation."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parents[1] / "fixtures"))
from index_testlib import DIM, HashEncoder, clustered_docs, queries_like, small_config  # noqa: E402

import indexing._build as build_mod  # noqa: E402
import indexing._segment as seg_mod  # noqa: E402
from indexing import build_index  # noqa: E402
from mvr import FDEConfig, FirstStageConfig, IndexConfig, MultiVectors, PoolingConfig  # noqa: E402
from mvr._fde import encode_document_fdes  # noqa: E402
from mvr._manifest import read_manifest  # noqa: E402
from mvr.errors import (  # noqa: E402
    ConfigError,
    DimensionMismatchError,
    EmptyInputError,
    IncompleteIndexError,
)
from serving import Searcher  # noqa: E402


# ---------------------------------------------------------------------- config
def test_index_config_round_trip_and_validation() -> None:
    cfg = IndexConfig(fde=FDEConfig(dim=8), pooling=PoolingConfig(pool_factor=3),
                      table_dtype="int8", first_stage=FirstStageConfig(kind="hnsw", hnsw_m=8))
    assert IndexConfig.from_dict(cfg.to_dict()) == cfg
    assert IndexConfig().resolved(12).fde == FDEConfig(dim=12)
    with pytest.raises(ConfigError, match="table_dtype: expected one of"):
        IndexConfig(table_dtype="bf16")
    with pytest.raises(ConfigError, match="kind: expected one of .*got 'ivf'"):
        FirstStageConfig(kind="ivf")
    with pytest.raises(ConfigError, match="expected the encoder's dim 4, got 8"):
        cfg.resolved(4)
    with pytest.raises(ConfigError, match="unknown keys"):
        IndexConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    with pytest.raises(ConfigError, match="batch_size: expected an int >= 1, got 0"):
        IndexConfig(batch_size=0)


# ---------------------------------------------------------------------- round trip
@st.composite
def corpora(draw):  # type: ignore[no-untyped-def]
    dim = draw(st.integers(2, 12))
    n = draw(st.integers(1, 25))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    docs = []
    for i in range(n):
        t = draw(st.integers(1, 7))
        v = rng.standard_normal((t, dim)).astype(np.float32)
        docs.append((f"id-{i}-{draw(st.text(max_size=3))}", v / np.linalg.norm(v, axis=1,
                                                                                keepdims=True)))
    dtypes = ["float16", "int8", "res4", "res8"] + (["pqr2", "pqr4"] if dim % 4 == 0 else [])
    cfg = small_config(dim=dim, table_dtype=draw(st.sampled_from(dtypes)),
                       record_alignment=draw(st.sampled_from([1, 8, 512])),
                       batch_size=draw(st.integers(1, 9)), store_text=draw(st.booleans()))
    return docs, cfg


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(corpora())
def test_format_round_trip(tmp_path_factory: pytest.TempPathFactory, data) -> None:  # type: ignore[no-untyped-def]
    docs, cfg = data
    ids = [d[0] for d in docs]
    if len(set(ids)) != len(ids):
        return
    path = tmp_path_factory.mktemp("idx")
    texts = [f"text of {i} é" for i in ids]
    build_index(path, [(i, t, v) for (i, v), t in zip(docs, texts, strict=True)], None, cfg,
                progress=False)
    m = read_manifest(path)
    assert m["counts"]["documents"] == len(docs)
    assert m["counts"]["tokens"] == sum(len(v) for _, v in docs)
    for mode in ("memory", "mmap"):
        with Searcher.open(path, mode=mode) as s:
            assert s.ids == ids
            got = s.store.get(np.arange(len(docs))[::-1])
            for j, (_, v) in enumerate(reversed(docs)):
                if cfg.table_dtype == "float16":
                    np.testing.assert_array_equal(got[j], v.astype(np.float16))
                elif cfg.table_dtype in ("res4", "res8", "pqr2", "pqr4"):  # centroid + residual
                    cos = (got[j] * v).sum(axis=1) / np.linalg.norm(got[j], axis=1)
                    assert cos.min() > (0.99 if cfg.table_dtype == "res8" else 0.9), cos.min()
                else:  # int8: error at most half a quantisation step per coordinate
                    step = np.abs(v).max(axis=1, keepdims=True) / 127
                    assert np.all(np.abs(got[j] - v) <= step / 2 + 1e-6)
            assert s.get_texts(ids) == (texts if cfg.store_text else [None] * len(ids))
            stage = s.first_stage.parts[0][1]
            expect = encode_document_fdes(MultiVectors.from_arrays([v for _, v in docs]), cfg.fde)
            if stage.kind == "exact":  # float32 FDEs in RAM
                np.testing.assert_allclose(stage.fdes, expect, rtol=1e-6, atol=1e-6)
            else:  # format 2: a faiss Flat index of the float16-rounded FDEs
                assert stage.kind == "flat"
                fdes = stage.index.reconstruct_n(0, stage.ntotal)
                np.testing.assert_array_equal(fdes, expect.astype(np.float16).astype(np.float32))


# ---------------------------------------------------------------------- crash + resume
def _snapshot(path: Path) -> dict:
    q = queries_like(clustered_docs(300, seed=5), 6)
    with Searcher.open(path) as s:
        res = s.search(q, k=5, candidates=40)
        tokens = s.store.get(np.arange(s.num_documents))
        return {"ids": s.ids, "res": res.ids, "scores": [x.tolist() for x in res.scores],
                "tokens": tokens.vectors.tobytes(), "offsets": tokens.offsets.tolist(),
                "fdes": _stage_fdes(s.first_stage.parts[0][1]).tobytes(),
                "cids": None if s._cids is None else s._cids.tobytes(),
                "texts": s.get_texts(s.ids)}


def _stage_fdes(stage: object) -> np.ndarray:
    """The FDEs a first stage holds: exact = the matrix, flat = faiss's copy."""
    if getattr(stage, "kind", None) == "exact":
        return stage.fdes  # type: ignore[attr-defined]
    return stage.index.reconstruct_n(0, stage.ntotal)  # type: ignore[attr-defined]


class _Boom(RuntimeError):
    pass


def _fail_on_call(monkeypatch: pytest.MonkeyPatch, owner: object, name: str, n: int) -> None:
    orig = getattr(owner, name)
    calls = {"n": 0}

    def wrapped(*a, **kw):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == n:
            raise _Boom(f"injected failure in {name}")
        return orig(*a, **kw)

    monkeypatch.setattr(owner, name, wrapped)


STAGES = [
    (build_mod, "_encode_batch", 3),
    (build_mod, "_pool_batch", 3),
    (build_mod, "_fde_batch", 4),
    (seg_mod.SegmentWriter, "append_tokens", 2),
    (seg_mod.SegmentWriter, "append_ids", 3),
    (seg_mod.SegmentWriter, "append_fdes", 3),
    (seg_mod.SegmentWriter, "commit", 4),
    (build_mod.BuildSession, "_save_progress", 3),
    (build_mod, "build_first_stage", 1),
    (build_mod, "write_manifest", 1),
]


@pytest.fixture(scope="module")
def clean_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[list, IndexConfig, dict]:
    docs = clustered_docs(300, seed=5)
    items = [(i, f"t{i}", v) for i, v in docs]
    cfg = small_config(batch_size=50)
    path = tmp_path_factory.mktemp("clean")
    build_index(path, items, None, cfg, progress=False)
    return items, cfg, _snapshot(path)


@pytest.mark.parametrize("owner,name,n", STAGES, ids=[s[1] for s in STAGES])
def test_resume_after_failure_at_each_stage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_build, owner, name, n  # type: ignore[no-untyped-def]
) -> None:
    items, cfg, expected = clean_build
    with monkeypatch.context() as mp:
        _fail_on_call(mp, owner, name, n)
        with pytest.raises(_Boom):
            build_index(tmp_path, items, None, cfg, progress=False)
    with pytest.raises(IncompleteIndexError, match="--resume"):
        Searcher.open(tmp_path)
    build_index(tmp_path, items, None, cfg, resume=True, progress=False)
    assert not (tmp_path / ".build").exists()
    assert _snapshot(tmp_path) == expected


def test_interrupted_build_refused_unless_resumed_or_overwritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_build  # type: ignore[no-untyped-def]
) -> None:
    items, cfg, expected = clean_build
    owner, name, n = STAGES[0]
    with monkeypatch.context() as mp:
        _fail_on_call(mp, owner, name, n)
        with pytest.raises(_Boom):
            build_index(tmp_path, items, None, cfg, progress=False)
    # a plain build must not silently throw the interrupted one away
    with pytest.raises(IncompleteIndexError, match="--resume"):
        build_index(tmp_path, items, None, cfg, progress=False)
    build_index(tmp_path, items, None, cfg, overwrite=True, progress=False)
    assert not (tmp_path / ".build").exists()
    assert _snapshot(tmp_path) == expected


@pytest.mark.parametrize("killed", ["after_mkdir_build", "before_first_progress"])
def test_resume_of_a_build_killed_before_its_first_progress_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_build, killed  # type: ignore[no-untyped-def]
) -> None:
    """A build killed after creating ``.build/`` but before it first records progress has
    nothing to continue: ``resume=True`` builds from scratch (it failed with 'incomplete
    index ... finish it with --resume': scripts/crash_campaign.py --at syscall, a SIGKILL
    at the build's 4th writing system call)."""
    items, cfg, expected = clean_build
    if killed == "after_mkdir_build":
        (tmp_path / ".build").mkdir()
    else:
        with monkeypatch.context() as mp:
            _fail_on_call(mp, build_mod.BuildSession, "_save_progress", 1)
            with pytest.raises(_Boom):
                build_index(tmp_path, items, None, cfg, progress=False)
        assert (tmp_path / "segments").is_dir()
    assert not (tmp_path / ".build" / "progress.json").exists()
    with pytest.raises(IncompleteIndexError, match="--resume"):  # not discarded silently
        build_index(tmp_path, items, None, cfg, progress=False)
    build_index(tmp_path, items, None, cfg, resume=True, progress=False)
    assert not (tmp_path / ".build").exists()
    assert _snapshot(tmp_path) == expected


def test_resume_refuses_another_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    items = clustered_docs(120, seed=2)
    cfg = small_config(batch_size=30)
    with monkeypatch.context() as mp:
        _fail_on_call(mp, build_mod, "_fde_batch", 3)
        with pytest.raises(_Boom):
            build_index(tmp_path, items, None, cfg, progress=False)
    with pytest.raises(ConfigError, match="cannot resume with another config"):
        build_index(tmp_path, items, None, small_config(batch_size=31), resume=True,
                    progress=False)
    build_index(tmp_path, items, None, cfg, resume=True, progress=False)
    assert read_manifest(tmp_path)["counts"]["documents"] == 120


# ---------------------------------------------------------------------- inputs
def test_text_documents_with_encoder_and_pooling(tmp_path: Path) -> None:
    enc = HashEncoder()
    texts = [(f"d{i}", " ".join(f"w{(i * 7 + j) % 50}" for j in range(3 + i % 9)))
             for i in range(80)]
    cfg = small_config(pooling=PoolingConfig(pool_factor=2), store_text=True)
    m = build_index(tmp_path, texts, enc, cfg, progress=False)
    assert m["encoder"] == enc.identity
    raw = enc.encode_documents([t for _, t in texts])
    assert m["counts"]["tokens"] < raw.total_tokens  # pooled
    with Searcher.open(tmp_path, encoder=enc) as s:
        lens = s.store.lengths(np.arange(80))
        assert np.all(lens == np.maximum(raw.lengths // 2, 1))
        res = s.search(["w3 w10 w17"], k=3)
        assert len(res.ids[0]) == 3
        assert s.get_texts(["d5"]) == [texts[5][1]]


def test_bad_inputs(tmp_path: Path) -> None:
    docs = clustered_docs(5)
    with pytest.raises(ConfigError, match="duplicate document id 'doc-1'"):
        build_index(tmp_path / "a", docs + [docs[1]], None, small_config(), progress=False)
    with pytest.raises(EmptyInputError, match="empty stream"):
        build_index(tmp_path / "b", [], None, small_config(), progress=False)
    bad = [("x", np.ones((2, DIM + 1), np.float32))]
    with pytest.raises(DimensionMismatchError, match=f"expected token dim {DIM}, got {DIM + 1}"):
        build_index(tmp_path / "c", docs + bad, None, small_config(), progress=False)
    with pytest.raises(EmptyInputError, match="'z': expected token vectors of shape"):
        build_index(tmp_path / "d", [("z", np.zeros((0, DIM), np.float32))], None,
                    small_config(), progress=False)
    with pytest.raises(ConfigError, match="pass an encoder"):
        build_index(tmp_path / "e", [("a", np.ones((1, DIM))), ("t", "text")], None,
                    small_config(), progress=False)


def test_overwrite_keeps_old_snapshot_readable(tmp_path: Path) -> None:
    a, b = clustered_docs(60, seed=1), clustered_docs(70, seed=2)
    build_index(tmp_path, a, None, small_config(), progress=False)
    with pytest.raises(ConfigError, match="already holds an index"):
        build_index(tmp_path, b, None, small_config(), progress=False)
    q = queries_like(a, 4)
    with Searcher.open(tmp_path, mode="mmap") as old:
        before = old.search(q, k=5).ids
        build_index(tmp_path, b, None, small_config(), progress=False, overwrite=True)
        assert old.search(q, k=5).ids == before
        assert old.get_texts(["doc-3"]) == [None]
    with Searcher.open(tmp_path) as new:
        assert new.num_documents == 70
        assert len(list((tmp_path / "segments").iterdir())) == 1
