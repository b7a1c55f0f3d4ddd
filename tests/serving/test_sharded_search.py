"""Sharded search (serving._sharded) returns exactly the single-process results: same
ids, same scores, for every query; with a shard down, 503 or flagged partial results.

The index has several segments (a build and two adds, as a distributed build makes),
a token codec, centroid ids (the approximate stage narrows 60 -> 15), faiss and exact
first stages, and tombstones."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from index_testlib import clustered_docs, queries_like, small_config  # noqa: E402

import mvr  # noqa: E402
from indexing import IndexWriter, build_index  # noqa: E402
from mvr import FirstStageConfig, IndexConfig  # noqa: E402
from serving import Searcher  # noqa: E402
from serving._sharded import (  # noqa: E402
    ShardedSearcher,
    ShardUnavailableError,
    assign_shards,
    open_local_shards,
)


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    docs = clustered_docs(900, seed=11)
    # the centroid-candidate stage (where the config has it) is not sharded: off here
    extra = ({"centroid_candidates": 0} if "centroid_candidates" in
             IndexConfig.__dataclass_fields__ else {})
    cfg = small_config(**extra, table_dtype="res4", codec_train_tokens=600, codec_centroids=32,
                       default_candidates=60, default_rerank=15,
                       first_stage=FirstStageConfig(kind="faiss", min_rows=250, train_size=400,
                                                    ivf_nprobe=4))
    path = tmp_path_factory.mktemp("sharded") / "idx"
    build_index(path, docs[:400], config=cfg, progress=False)
    with IndexWriter(path) as w:
        w.add(docs[400:700])
        w.add(docs[700:])  # 200 documents: under min_rows, an exact (Flat) first stage
        w.delete([d for d, _ in docs[5:900:37]])
    return path, docs


def test_assign_shards_is_a_balanced_partition() -> None:
    m = {"segments": [{"documents": n} for n in (400, 300, 200, 50, 50)]}
    assert assign_shards(m, 1) == [(0, 5)]
    assert assign_shards(m, 2) == [(0, 2), (2, 5)]
    spans = assign_shards(m, 5)
    assert spans == [(i, i + 1) for i in range(5)]
    with pytest.raises(mvr.errors.ConfigError, match="1 <= K <= 5"):
        assign_shards(m, 6)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_sharded_equals_single_process(index: tuple[Path, list], k: int) -> None:
    path, docs = index
    q = queries_like(docs, 40, seed=3)
    with Searcher.open(path) as single:
        sharded = open_local_shards(path, k)
        try:
            for kw in ({}, {"candidates": 200, "rerank_candidates": 30}, {"rerank_candidates": 60},
                       {"k": 3}):
                a, b = single.search(q, **kw), sharded.search(q, **kw)
                assert a.ids == b.ids, kw
                for x, y in zip(a.scores, b.scores, strict=True):
                    np.testing.assert_allclose(x, y, rtol=0, atol=1e-5)
                assert not b.partial
            a, b = single.search(q, k=7, rerank=False), sharded.search(q, k=7, rerank=False)
            assert a.ids == b.ids
            ids = [[docs[i][0] for i in (1, 450, 899, 702)]] * len(q)
            a, b = single.rerank(q, ids), sharded.rerank(q, ids)
            assert a.ids == b.ids
            np.testing.assert_allclose(np.concatenate(a.scores), np.concatenate(b.scores),
                                       atol=1e-5)
            assert sharded.num_documents == single.num_documents
            with pytest.raises(mvr.errors.DocumentNotFoundError):
                sharded.rerank(q[:1], [[docs[5][0]]])  # deleted
            st = sharded.stats()
            assert [s["status"] for s in st["shards"]] == ["ok"] * k
            assert sum(s["documents"] for s in st["shards"]) == single.num_documents
        finally:
            sharded.close()


class _Down:
    """A shard whose process is gone: every call fails as a dead Ray replica's does."""

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        def fail(*args, **kwargs):  # type: ignore[no-untyped-def]
            raise ConnectionError("replica died")
        return fail


def test_shard_down_is_503_or_flagged_partial(index: tuple[Path, list]) -> None:
    path, docs = index
    q = queries_like(docs, 10, seed=4)
    sharded = open_local_shards(path, 3)
    try:
        full = sharded.search(q, k=10)
        alive = sharded.shards[1]
        sharded.shards[1] = _Down()
        with pytest.raises(ShardUnavailableError, match=r"\[1\]") as e:
            sharded.search(q, k=10)
        from serving.http._errors import status_for

        assert status_for(e.value) == 503
        part = sharded.search(q, k=10, partial_results=True)
        assert part.partial and part.missing_shards == [1]
        lo, hi = sharded._bases[1], sharded._bases[2]
        shard1 = {docs[i][0] for i in range(lo, hi)}
        assert not shard1 & {d for ids in part.ids for d in ids}
        # exactly what the two live shards answer on their own
        spans = assign_shards(sharded.manifest, 3)
        others = ShardedSearcher(path, [sharded.shards[0], sharded.shards[2]],
                                 [spans[0], spans[2]], manifest=sharded.manifest)
        ref = others.search(q, k=10)
        assert part.ids == ref.ids
        assert sharded.stats()["shards"][1]["status"] == "down"
        sharded.shards[1] = alive  # the replica is back: complete again
        again = sharded.search(q, k=10)
        assert again.ids == full.ids and not again.partial
    finally:
        sharded.close()
