"""faiss first stages (HNSW, IVF-PQ): built at index time, recorded, tombstones honoured."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "fixtures"))
from index_testlib import clustered_docs, queries_like, small_config  # noqa: E402

from indexing import IndexWriter, build_index  # noqa: E402
from indexing._first_stage_build import ivf_params, pq_m  # noqa: E402
from mvr import FirstStageConfig  # noqa: E402
from mvr._manifest import read_manifest  # noqa: E402
from mvr.errors import ConfigError  # noqa: E402
from serving import Searcher  # noqa: E402

N = 800


@pytest.fixture(scope="module")
def data():  # type: ignore[no-untyped-def]
    docs = clustered_docs(N, seed=31)
    return docs, queries_like(docs, 10, seed=3)


@pytest.fixture(scope="module")
def exact_index(tmp_path_factory: pytest.TempPathFactory, data) -> Path:  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("exact")
    build_index(path, data[0], None, small_config(), progress=False)
    return path


def _overlap(a: list[list[str]], b: list[list[str]]) -> float:
    return float(np.mean([len(set(x) & set(y)) / len(y) for x, y in zip(a, b, strict=True)]))


@pytest.mark.parametrize("fs,floor", [
    (FirstStageConfig(kind="hnsw", hnsw_m=16, min_rows=100), 0.95),
    (FirstStageConfig(kind="ivfpq", min_rows=100, pq_group=16, ivf_nlist=8, ivf_nprobe=8), 0.5),
], ids=["hnsw", "ivfpq"])
def test_faiss_first_stage_against_exact(tmp_path: Path, data, exact_index, fs, floor) -> None:  # type: ignore[no-untyped-def]
    docs, q = data
    build_index(tmp_path / "ann", docs, None, small_config(first_stage=fs), progress=False)
    m = read_manifest(tmp_path / "ann")
    assert m["segments"][0]["first_stage"] == fs.kind
    assert "segments/seg-000001/first_stage.faiss" in m["files"]
    with Searcher.open(exact_index) as ex, Searcher.open(tmp_path / "ann") as ann:
        assert ann.stats()["first_stage"] == [fs.kind]
        ref = ex.search(q, k=50, rerank=False)
        got = ann.search(q, k=50, rerank=False)
        assert _overlap(got.ids, ref.ids) >= floor
        if fs.kind == "hnsw":  # exact inner products for what it returns
            for qi in range(len(q)):
                pos = {d: j for j, d in enumerate(ref.ids[qi])}
                for d, s in zip(got.ids[qi], got.scores[qi], strict=True):
                    if d in pos:
                        assert abs(ref.scores[qi][pos[d]] - s) < 1e-3
        final = ann.search(q, k=10, candidates=200)
        assert _overlap(final.ids, ex.search(q, k=10, candidates=200).ids) >= floor - 0.1
        # deletions: never returned, and still n candidates
        gone = sorted({d for ids in got.ids for d in ids[:10]})
        with IndexWriter(tmp_path / "ann") as w:
            w.delete(gone)
        with Searcher.open(tmp_path / "ann") as after:
            res = after.search(q, k=30, rerank=False)
            assert all(len(ids) == 30 for ids in res.ids)
            assert not set(gone) & {d for ids in res.ids for d in ids}
            assert not set(gone) & {d for ids in after.search(q, k=10).ids for d in ids}


def test_small_segments_fall_back_to_exact(tmp_path: Path, data) -> None:  # type: ignore[no-untyped-def]
    docs, q = data
    fs = FirstStageConfig(kind="hnsw", min_rows=500)
    build_index(tmp_path, docs[:600], None, small_config(first_stage=fs), progress=False)
    with IndexWriter(tmp_path) as w:
        w.add(docs[600:650])
    m = read_manifest(tmp_path)
    assert [s["first_stage"] for s in m["segments"]] == ["hnsw", "exact"]
    with Searcher.open(tmp_path) as s:
        assert s.stats()["first_stage"] == ["hnsw", "exact"]
        res = s.search(q, k=10, candidates=650)
        ex = s.exhaustive(q, k=10)
        assert _overlap(res.ids, ex.ids) >= 0.95


def test_pq_parameters() -> None:
    fs = FirstStageConfig(kind="ivfpq")
    assert pq_m(fs, 10240) == 1280  # PQ-256-8: one byte per 8 coordinates
    with pytest.raises(ConfigError, match="divisor of the FDE dim 100, got 8"):
        pq_m(fs, 100)
    assert ivf_params(fs, 10000) == (256, 64)
    assert ivf_params(fs, 10) == (1, 1)


@pytest.mark.parametrize("keep", ["random_50", "random_10", "random_1", "worst_2", "none"])
def test_fast_scan_overfetch_is_the_top_n_allowed(tmp_path: Path, keep: str) -> None:
    """A flat PQ fast-scan index takes no selector: a masked search over-fetches, first
    what the allowed share predicts and more for the queries short of n. The answer is
    the top n allowed rows of one full faiss ranking (the same scores; rows differ only
    among ties at the n-th score), also for a mask holding only each query's worst rows
    (every query needs the doubling up to the sure bound)."""
    import faiss

    from serving._first_stage_faiss import FaissFirstStage

    rng = np.random.default_rng(3)
    x = rng.standard_normal((3000, 32)).astype(np.float32)
    q = rng.standard_normal((6, 32)).astype(np.float32)
    index = faiss.index_factory(32, "PQ8x4fs", faiss.METRIC_INNER_PRODUCT)
    index.train(x)
    index.add(x)
    faiss.write_index(index, str(tmp_path / "fs.faiss"))
    stage = FaissFirstStage(tmp_path / "fs.faiss", "faiss", FirstStageConfig())
    assert stage._no_params
    full_s, full_r = index.search(q, 3000)
    if keep == "none":
        allowed = np.zeros(3000, bool)
    elif keep == "worst_2":  # the 60 rows the first query ranks last
        allowed = np.zeros(3000, bool)
        allowed[full_r[0, -60:]] = True
    else:
        allowed = rng.random(3000) < int(keep.split("_")[1]) / 100
    n = 10  # the worst 60 of 3,000 are first asked for 814 answers: two doublings to 2,950
    got_s, got_r = stage.search(q, n, allowed=allowed)
    for i in range(len(q)):
        ok = allowed[full_r[i]]
        want_s, want_r = full_s[i][ok][:n], full_r[i][ok][:n]
        m = len(want_s)
        np.testing.assert_array_equal(got_s[i, :m], want_s)
        assert (got_r[i, m:] == -1).all() and np.isneginf(got_s[i, m:]).all()
        if m:
            untied = want_s > want_s[-1]
            assert set(got_r[i, :m][untied]) == set(want_r[untied])
            assert allowed[got_r[i, :m]].all()
