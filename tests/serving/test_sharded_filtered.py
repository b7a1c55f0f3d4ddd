"""Filtered and hybrid search over shards (serving._sharded_filtered) return exactly the
single-process answers: same ids, same scores up to float rounding.

The index has three segments (a build and two adds), a token codec with centroid ids
and approximate codes, list candidates (centroid lists, or token lists in their place:
both indexes are tested), faiss and exact first stages,
tombstones, stored texts (so BM25 per segment) and metadata, one field of which only
the last segment has. Filters are chosen so that every path of
serving._filtered_search.filtered_path runs (the test checks which one each takes),
and the answers are checked against a brute force over the raw vectors too."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from index_testlib import brute_maxsim, clustered_docs, queries_like, small_config  # noqa: E402

from indexing import IndexWriter, build_index  # noqa: E402
from mvr import FirstStageConfig  # noqa: E402
from mvr.errors import InvalidFilterError  # noqa: E402
from serving import Searcher  # noqa: E402
from serving._filtered_search import allowed_rows, filtered_path  # noqa: E402
from serving._sharded import (  # noqa: E402
    ShardedSearcher,
    ShardSearcher,
    ShardUnavailableError,
    assign_shards,
    open_local_shards,
)

N = 900
GONE = slice(5, N, 37)
WORDS = ["protein", "proteins", "cell", "cells", "vitamin", "fracture", "bone", "the", "of",
         "running", "runs", "cancer", "gene", "genes", "virus", "heart", "blood"]
LANGS = ["en", "de", "fr"]


class _Encoder:
    """Query texts -> token vectors near the documents (hybrid search needs texts)."""

    dim = 16
    identity = None

    def __init__(self, docs: list) -> None:
        self.docs = docs

    def encode_queries(self, texts: list[str]) -> Any:
        return queries_like(self.docs, len(texts), seed=sum(len(t) for t in texts))


def _items(docs: list, lo: int, hi: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(lo)
    out = []
    for i in range(lo, hi):
        meta: dict[str, Any] = {"bucket": i % 100, "lang": LANGS[i % 3],
                                "tags": [WORDS[i % 7], WORDS[(i // 7) % 7]]}
        if i >= 700:
            meta["late"] = True  # a field only the last segment has
        text = " ".join(rng.choice(WORDS, size=int(rng.integers(2, 10))))
        out.append({"id": docs[i][0], "text": text, "vectors": docs[i][1], "metadata": meta})
    return out


LISTS = {"centroid_lists": {"centroid_candidates": 40, "centroid_nprobe": 4},
         "token_lists": {"token_candidates": 40, "token_nprobe": 4, "token_kprime": 60}}


@pytest.fixture(scope="module", params=sorted(LISTS))
def index(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    """Either kind of list candidates (centroid lists, or token lists in their place)."""
    docs = clustered_docs(N, seed=11)
    cfg = small_config(table_dtype="res4", codec_train_tokens=600, codec_centroids=32,
                       default_candidates=60, default_rerank=15, **LISTS[request.param],
                       first_stage=FirstStageConfig(kind="faiss", min_rows=250, train_size=400,
                                                    ivf_nprobe=4))
    path = tmp_path_factory.mktemp("sharded_filtered") / "idx"
    build_index(path, _items(docs, 0, 400), config=cfg, progress=False)
    with IndexWriter(path) as w:
        w.add(_items(docs, 400, 700))
        w.add(_items(docs, 700, N))  # 200 documents: under min_rows, an exact first stage
        w.delete([d for d, _ in docs[GONE]])
    return path, docs


@pytest.fixture(scope="module")
def pair(index: tuple[Path, list]) -> Any:
    """(single-process searcher, {K: sharded searcher}), both with the same encoder."""
    path, docs = index
    single = Searcher.open(path)
    assert single._cids is not None and single._extra_n() == 40  # approximate stage, lists on
    assert (single._tokens is not None) == (single.config.token_candidates > 0)
    single._encoder = _Encoder(docs)
    sharded = {}
    for k in (2, 3):
        sharded[k] = open_local_shards(path, k)
        sharded[k]._encoder = _Encoder(docs)
    yield single, sharded
    single.close()
    for s in sharded.values():
        s.close()


def _assert_same(a: Any, b: Any, what: object) -> None:
    assert a.ids == b.ids, what
    for x, y in zip(a.scores, b.scores, strict=True):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-5, err_msg=str(what))
    assert not b.partial, what


FILTERS = [
    ({"field": "bucket", "lt": 2}, "exact"),                              # ~17 rows
    ({"field": "bucket", "lt": 20}, "allowed_candidates"),                # ~170 rows
    ({"field": "bucket", "gte": 30}, "first_stage"),                      # ~600 rows
    ({"and": [{"field": "lang", "eq": "de"}, {"not": {"field": "tags", "in": ["cell"]}}]},
     "allowed_candidates"),                                               # 216 rows
    ({"or": [{"field": "late", "eq": True}, {"field": "bucket", "lt": 50}]}, "first_stage"),
    ({"ids": [f"doc-{i}" for i in range(0, N, 9)] + ["doc-5", "no-such-doc"]}, "allowed_candidates"),
    ({"field": "bucket", "gt": 1000}, None),                              # keeps nothing
]


@pytest.mark.parametrize("shards", [2, 3])
def test_filtered_search_equals_the_single_process(pair: Any, index: tuple[Path, list],
                                                   shards: int) -> None:
    single, sharded = pair
    ss = sharded[shards]
    _, docs = index
    q = queries_like(docs, 16, seed=4)
    seen = set()
    for flt, path in FILTERS:
        n_allowed = int(allowed_rows(single, flt).sum())
        if path is None:
            assert n_allowed == 0
        else:
            got_path, _ = filtered_path(single, n_allowed, 10, single.config.default_candidates)
            assert got_path == path, (flt, n_allowed, got_path)
            seen.add(path)
        for kw in ({"k": 10}, {"k": 4, "candidates": 200, "rerank_candidates": 30}):
            _assert_same(single.search(q, filter=flt, **kw), ss.search(q, filter=flt, **kw),
                         (flt, kw))
        a, b = single.search(q, k=6, rerank=False, filter=flt), ss.search(q, k=6, rerank=False,
                                                                         filter=flt)
        assert a.ids == b.ids, flt
    assert seen == {"exact", "allowed_candidates", "first_stage"}


def test_selective_filter_is_the_brute_force_top_k(pair: Any, index: tuple[Path, list]) -> None:
    """The exact path over shards against exact MaxSim of the raw vectors of every allowed
    document (res4 tables: compared as a top-k overlap)."""
    _, sharded = pair
    _, docs = index
    q = queries_like(docs, 10, seed=6)
    gone = {d for d, _ in docs[GONE]}
    keep = [i for i in range(N) if i % 100 < 2 and docs[i][0] not in gone]
    ref = brute_maxsim(q, [docs[i][1] for i in keep])
    got = sharded[3].search(q, k=5, filter={"field": "bucket", "lt": 2})
    overlap = [len(set(g) & {docs[keep[j]][0] for j in np.argsort(-r)[:5]}) / 5
               for g, r in zip(got.ids, ref, strict=True)]
    assert np.mean(overlap) >= 0.9, overlap


HYBRIDS = [{"fusion": "rrf", "depth": 30}, {"fusion": "weighted", "weight": 0.7, "depth": 25},
           {"fusion": "rrf", "depth": 20, "rescore": False}, True]
TEXTS = ["cell proteins and genes", "bone fracture vitamin", "the heart of blood", "zebra"]


@pytest.mark.parametrize("shards", [2, 3])
def test_hybrid_search_equals_the_single_process(pair: Any, shards: int) -> None:
    single, sharded = pair
    ss = sharded[shards]
    for hyb in HYBRIDS:
        for flt in (None, {"field": "bucket", "lt": 20}, {"field": "lang", "in": ["en", "fr"]}):
            for kw in ({"k": 10}, {"k": 5, "candidates": 30, "rerank_candidates": 20}):
                a = single.search(TEXTS, hybrid=hyb, filter=flt, **kw)
                b = ss.search(TEXTS, hybrid=hyb, filter=flt, **kw)
                assert a.ids == b.ids, (hyb, flt, kw)
                for x, y in zip(a.scores, b.scores, strict=True):
                    np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
    a = single.search(TEXTS, k=8, rerank=False, hybrid="rrf")
    assert a.ids == ss.search(TEXTS, k=8, rerank=False, hybrid="rrf").ids


def test_bad_filters_fail_as_in_the_single_process(pair: Any) -> None:
    single, sharded = pair
    q = ["cell"]
    for flt in ({"field": "nope", "eq": 1}, {"field": "lang", "gte": 3},
                {"field": "bucket", "eq": "x"}, {"and": []}):
        with pytest.raises(InvalidFilterError) as want:
            single.search(q, filter=flt)
        with pytest.raises(InvalidFilterError) as got:
            sharded[2].search(q, filter=flt)
        assert str(got.value) == str(want.value)
    # 'late' exists only in the last shard's segment: still a known field for the others
    assert sharded[3].search(q, k=3, filter={"field": "late", "eq": True}).ids


class _Down:
    def __getattr__(self, name: str) -> Any:
        def fail(*_: Any) -> Any:
            raise ConnectionError("replica gone")
        return fail


def test_a_shard_down_is_503_or_the_others_flagged_partial(index: tuple[Path, list]) -> None:
    path, docs = index
    from mvr._manifest import read_manifest

    manifest = read_manifest(path)
    spans = assign_shards(manifest, 2)
    up = ShardSearcher(path, manifest, spans[0], 0)
    broken = ShardedSearcher(path, [up, _Down()], spans, manifest=manifest)
    alone = ShardedSearcher(path, [up], spans[:1], manifest=manifest)
    for s in (broken, alone):
        s._encoder = _Encoder(docs)
    try:
        for kw in ({"filter": {"field": "bucket", "lt": 20}},
                   {"filter": {"field": "bucket", "gte": 30}},
                   {"hybrid": "rrf", "filter": {"field": "lang", "eq": "en"}}):
            with pytest.raises(ShardUnavailableError, match=r"shard\(s\) \[1\]"):
                broken.search(TEXTS, **kw)
            part = broken.search(TEXTS, partial_results=True, **kw)
            assert part.partial and part.missing_shards == [1]
            ref = alone.search(TEXTS, **kw)
            held = set(up.searcher.ids)
            assert all(set(ids) <= held for ids in part.ids), kw  # never shard 1's documents
            assert part.ids == ref.ids, kw  # the other shard's answer itself
    finally:
        up.close()


def test_stored_vectors_come_from_the_shard_holding_the_document(pair: Any) -> None:
    single, sharded = pair
    for doc in ("doc-1", "doc-450", "doc-899"):
        want = single.store.get(np.array([single._id_to_row[doc]]))[0]
        np.testing.assert_array_equal(sharded[3].stored_vectors(doc),
                                      np.asarray(want, np.float32))
