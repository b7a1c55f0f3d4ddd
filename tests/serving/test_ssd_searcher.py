"""Searcher in SSD mode: identical results to memory mode, errors, threads, streams."""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "fixtures"))
from index_testlib import clustered_docs, queries_like, small_config  # noqa: E402

from indexing import IndexWriter, build_index  # noqa: E402
from mvr.errors import ConfigError, TokenReadError  # noqa: E402
from mvr.format import SEGMENTS_DIR, TOKENS_FILE  # noqa: E402
from serving import Searcher  # noqa: E402
from serving._disk_store import DiskTokenStore  # noqa: E402

N_DOCS = 300


def _build(path: Path, **cfg):  # type: ignore[no-untyped-def]
    docs = clustered_docs(N_DOCS, seed=31)
    build_index(path, docs, None, small_config(batch_size=100, **cfg), progress=False)
    with IndexWriter(path) as w:  # a second segment and tombstones
        w.add([(f"new-{i}", v) for i, (_, v) in enumerate(clustered_docs(60, seed=32))])
        w.delete(["doc-3", "new-7", "doc-150"])
    return docs


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("ssd_searcher")
    docs = _build(path, record_alignment=4096)
    return path, queries_like(docs, 16, seed=5)


def _same(a, b) -> None:  # type: ignore[no-untyped-def]
    assert a.ids == b.ids
    for x, y in zip(a.scores, b.scores, strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"prefetch": False},
        {"direct": True, "cache_bytes": 0, "coarse": "prefix", "coarse_dims": 16},
        {"cache_bytes": 20_000, "coarse_candidates": 5, "read_threads": 2, "coarse": "pca"},
        {"coarse_nlist": 8, "coarse_nprobe": 2},
    ],
)
def test_ssd_results_identical_to_memory(built, options) -> None:  # type: ignore[no-untyped-def]
    path, q = built
    with Searcher.open(path, mode="memory") as mem, Searcher.open(path, mode="ssd", **options) as ssd:
        assert isinstance(ssd.store, DiskTokenStore)
        for k, n in ((10, 50), (5, 200)):
            for batch in (q[:1], q):
                _same(mem.search(batch, k=k, candidates=n), ssd.search(batch, k=k, candidates=n))
        ids = [["doc-1", "doc-2", "new-3"]] * len(q)
        _same(mem.rerank(q, ids), ssd.rerank(q, ids))
        _same(mem.exhaustive(q[:3]), ssd.exhaustive(q[:3]))
        st = ssd.stats()
        store = st["store"]
        assert store["config"]["mode"] == "ssd"
        assert store["config"]["prefetch"] == options.get("prefetch", True)
        assert store["rows_needed"] > 0 and store["reads_issued"] > 0
        assert store["resident_bytes"] <= store["config"]["cache_bytes"]
        assert {"first_stage", "fetch", "maxsim"} <= set(st["stages"])
        if options.get("prefetch", True):
            assert store["rows_prefetched"] > 0 and "coarse_prefetch" in st["stages"]
            assert "prefetcher" in store
        else:
            assert store["rows_prefetched"] == 0


def test_full_width_coarse_pass_prefetches_every_candidate(built) -> None:  # type: ignore[no-untyped-def]
    path, q = built
    with Searcher.open(path, mode="ssd", coarse="prefix", coarse_dims=10_000, coarse_factor=1.0,
                       cache_bytes=0) as ssd:
        ssd.search(q, k=10, candidates=40)
        st = ssd.stats()["store"]
        assert st["coarse_recall"] == 1.0  # coarse = the full first stage
        assert st["rows_read_sync"] == 0


def test_search_stream_equals_search(built) -> None:  # type: ignore[no-untyped-def]
    path, q = built
    batches = [q[i : i + 3] for i in range(0, len(q), 3)]
    with Searcher.open(path, mode="memory") as mem, Searcher.open(path, mode="ssd") as ssd:
        got = list(ssd.search_stream(iter(batches), k=7, candidates=30))
        assert len(got) == len(batches)
        for b, res in zip(batches, got, strict=True):
            _same(mem.search(b, k=7, candidates=30), res)
        got_mem = list(mem.search_stream(batches, k=7, candidates=30))
        for a, b in zip(got, got_mem, strict=True):
            _same(a, b)


def test_concurrent_searches_from_several_threads(built) -> None:  # type: ignore[no-untyped-def]
    path, q = built
    with Searcher.open(path, mode="memory") as mem:
        ref = [mem.search(q[i : i + 1], k=10) for i in range(len(q))]
    with Searcher.open(path, mode="ssd", cache_bytes=30_000, read_threads=4) as ssd:
        with ThreadPoolExecutor(6) as ex:
            got = list(ex.map(lambda i: ssd.search(q[i : i + 1], k=10), list(range(len(q))) * 3))
        for i, res in enumerate(got):
            _same(ref[i % len(q)], res)


def test_truncated_table_names_document_and_file_and_keeps_serving(tmp_path) -> None:  # type: ignore[no-untyped-def]
    docs = _build(tmp_path, record_alignment=4096)
    q = queries_like(docs, 4, seed=6)
    with Searcher.open(tmp_path, mode="memory") as mem:
        ref = mem.search(q, k=10, candidates=20)
        last_seg = mem.manifest["segments"][-1]["name"]
    table = tmp_path / SEGMENTS_DIR / last_seg / TOKENS_FILE
    with Searcher.open(tmp_path, mode="ssd", cache_bytes=0, verify=False) as ssd:
        os.truncate(table, 4096 * 10)  # after opening: rows past the 10th record of the segment
        victim = "new-30"
        with pytest.raises(TokenReadError) as ei:
            ssd.rerank(q[:1], [[victim, "doc-1"]])
        msg = str(ei.value)
        assert repr(victim) in msg and str(table) in msg and "short read" in msg
        # queries whose candidates live in the intact segment are still served
        ids = [[d for d in r if not d.startswith("new-")] for r in ref.ids]
        res = ssd.rerank(q, ids, k=5)
        assert res.ids == [r[:5] for r in ids]


def test_store_options_are_validated(built) -> None:  # type: ignore[no-untyped-def]
    path, _ = built
    with pytest.raises(ConfigError, match="coarse: expected 'ivf', 'pca' or 'prefix', got 'x'"):
        Searcher.open(path, mode="ssd", coarse="x")
    with pytest.raises(ConfigError, match="read_threads: expected >= 1, got 0"):
        Searcher.open(path, mode="ssd", read_threads=0)
