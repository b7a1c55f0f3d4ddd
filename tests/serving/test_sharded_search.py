"""Sharded search (serving._sharded) returns exactly the single-process results: same
ids, same scores, for every query; with a shard down, 503 or flagged partial results.

The index has several segments (a build and two adds, as a distributed build makes),
a token codec, centroid ids, candidates from the centroid inverted lists (on by
default; here cut to 40 per query so that the cut matters), the approximate stage
narrowing them, faiss and exact first stages, and tombstones. A second index has the
lists off. Equality is exact, not a superset argument: a row's list score and its
approximate score are functions of the query and that row alone, and every cut (the
first stage's N, the lists' top 40, the approximate top ``rerank_candidates``, the
final k) breaks ties by the lower row, so the merge of the shards' cuts is the single
process's cut. Recall against brute-force MaxSim is checked besides."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from index_testlib import (  # noqa: E402
    brute_maxsim,
    clustered_docs,
    queries_like,
    small_config,
)

import mvr  # noqa: E402
from indexing import IndexWriter, build_index  # noqa: E402
from mvr import FirstStageConfig  # noqa: E402
from mvr._approx import (  # noqa: E402
    centroid_lists,
    scored_centroid_candidates,
)
from serving import Searcher  # noqa: E402
from serving._first_stage import merge_top_n  # noqa: E402
from serving._sharded import (  # noqa: E402
    ShardedSearcher,
    ShardUnavailableError,
    assign_shards,
    open_local_shards,
)

GONE = slice(5, 900, 37)  # deleted documents


def _build(path: Path, docs: list, **kw: object) -> Path:
    cfg = small_config(table_dtype="res4", codec_train_tokens=600, codec_centroids=32,
                       default_candidates=60, default_rerank=15,
                       first_stage=FirstStageConfig(kind="faiss", min_rows=250, train_size=400,
                                                    ivf_nprobe=4), **kw)
    build_index(path, docs[:400], config=cfg, progress=False)
    with IndexWriter(path) as w:
        w.add(docs[400:700])
        w.add(docs[700:])  # 200 documents: under min_rows, an exact (Flat) first stage
        w.delete([d for d, _ in docs[GONE]])
    return path


@pytest.fixture(scope="module")
def docs() -> list:
    return clustered_docs(900, seed=11)


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory, docs: list) -> tuple[Path, list]:
    """Lists on (the default), their top 40 per query taken."""
    path = tmp_path_factory.mktemp("sharded") / "idx"
    return _build(path, docs, centroid_candidates=40, centroid_nprobe=4), docs


@pytest.fixture(scope="module")
def index_tokens(tmp_path_factory: pytest.TempPathFactory, docs: list) -> tuple[Path, list]:
    """Token lists (serving._token_candidates) in place of the centroid lists."""
    path = tmp_path_factory.mktemp("sharded_tok") / "idx"
    return _build(path, docs, token_candidates=40, token_nprobe=4, token_kprime=60), docs


@pytest.fixture(scope="module")
def index_no_lists(tmp_path_factory: pytest.TempPathFactory, docs: list) -> tuple[Path, list]:
    path = tmp_path_factory.mktemp("sharded0") / "idx"
    return _build(path, docs, centroid_candidates=0), docs


def test_assign_shards_is_a_balanced_partition() -> None:
    m = {"segments": [{"documents": n} for n in (400, 300, 200, 50, 50)]}
    assert assign_shards(m, 1) == [(0, 5)]
    assert assign_shards(m, 2) == [(0, 2), (2, 5)]
    spans = assign_shards(m, 5)
    assert spans == [(i, i + 1) for i in range(5)]
    with pytest.raises(mvr.errors.ConfigError, match="1 <= K <= 5"):
        assign_shards(m, 6)


def _assert_same(a: mvr.SearchResults, b: mvr.SearchResults, what: object) -> None:
    assert a.ids == b.ids, what
    for x, y in zip(a.scores, b.scores, strict=True):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-5)


def test_merged_list_cuts_are_the_global_cut_even_with_ties() -> None:
    """The lists' top n over all rows == the merge of the top n of each run of rows,
    with many exact ties at the cut (rows repeated with the same centroid ids)."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 24, size=(60, 4)).astype(np.uint16)
    cids = np.repeat(base, 5, axis=0).reshape(-1)  # 300 rows, each pattern 5 times
    starts = np.arange(0, cids.size + 1, 4, dtype=np.int64)
    st = rng.standard_normal((24, 7)).astype(np.float32)
    qo = np.array([0, 3, 7])
    n = 37
    whole = scored_centroid_candidates(st, qo, *centroid_lists(cids, starts, 24), 300, n, 3)
    assert np.isin(whole[1][:, -1], whole[1][:, :-1]).any()  # a tie sits at the cut
    parts = []
    for a, b in ((0, 90), (90, 210), (210, 300)):
        r, s = scored_centroid_candidates(st, qo, *centroid_lists(cids[a * 4:b * 4],
                                          starts[a:b + 1] - a * 4, 24), b - a, n, 3)
        parts.append((s, np.where(r >= 0, r + a, -1)))
    s, r = merge_top_n(parts, n)
    assert np.array_equal(r, whole[0])
    np.testing.assert_array_equal(s, whole[1])


_SEARCHES = ({}, {"candidates": 200, "rerank_candidates": 30}, {"rerank_candidates": 60},
             {"k": 3}, {"candidates": 10, "rerank_candidates": 100_000}, {"candidates": 5, "k": 5})


@pytest.mark.parametrize("k", [1, 2, 3])
def test_sharded_equals_single_process(index: tuple[Path, list], k: int) -> None:
    path, docs = index
    q = queries_like(docs, 40, seed=3)
    with Searcher.open(path) as single:
        assert single._lists is not None
        sharded = open_local_shards(path, k)
        try:
            for kw in _SEARCHES:
                a, b = single.search(q, **kw), sharded.search(q, **kw)
                _assert_same(a, b, kw)
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


def test_sharded_equals_single_process_without_lists(index_no_lists: tuple[Path, list]) -> None:
    path, docs = index_no_lists
    q = queries_like(docs, 40, seed=3)
    with Searcher.open(path) as single:
        assert single._lists is None
        sharded = open_local_shards(path, 2)
        try:
            for kw in _SEARCHES:
                _assert_same(single.search(q, **kw), sharded.search(q, **kw), kw)
        finally:
            sharded.close()


def test_sharded_recall_against_brute_force(index: tuple[Path, list]) -> None:
    """Not only the single process's answer: the right one where the settings promise it.
    With candidates covering the index, sharded search is brute-force MaxSim over the
    stored (res4) tokens (``exhaustive``), and against brute force over the raw vectors
    it loses only what res4 loses (recall@10 0.85 measured; these tiny FDEs and 32
    centroids rank poorly at small depths, which equality above covers)."""
    path, docs = index
    q = queries_like(docs, 40, seed=5)
    gone = {d for d, _ in docs[GONE]}
    live = [(d, v) for d, v in docs if d not in gone]
    ref = brute_maxsim(q, [v for _, v in live])
    sharded = open_local_shards(path, 3)
    try:
        res = sharded.search(q, k=10, candidates=len(docs), rerank_candidates=100_000)
    finally:
        sharded.close()
    with Searcher.open(path) as single:
        table = single.exhaustive(q, k=10)
    same = sum(len(set(a) & set(b)) for a, b in zip(res.ids, table.ids, strict=True))
    assert same / (10 * len(q)) >= 0.98
    hits = 0
    for i in range(len(q)):
        top = {live[j][0] for j in np.argsort(-ref[i], kind="stable")[:10]}
        hits += len(top & set(res.ids[i]))
        assert not gone & set(res.ids[i])
    assert hits / (10 * len(q)) >= 0.8, hits / (10 * len(q))


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


@pytest.mark.parametrize(("args", "expected"), [
    (["--ray", "--shards", "0"], "shards: expected an int >= 1, got 0"),
    (["--ray", "--shards", "4"], "expected 1 <= K <= 3 (the index's segments), got 4"),
    (["--shards", "2"], "--shards, --ray-address and --request-timeout need --ray"),
    (["--ray-address", "auto", "--shards", "2"], "need --ray"),
    (["--request-timeout", "5"], "need --ray"),
    (["--ray", "--shards", "2", "--request-timeout", "0"],
     "request_timeout_s: expected > 0 seconds or None, got 0.0"),
    (["--ray"], "expected --shards K"),
    (["--ray", "--shards", "2", "--port", "0"], "--ray needs a fixed port"),
])
def test_serve_ray_refuses_bad_shards_before_starting(index: tuple[Path, list], args: list[str],
                                                       expected: str) -> None:
    """``mvr serve DIR --ray --shards K``: bad K (0, more than the segments), --shards
    without --ray and the reverse are refused naming the expected and actual value, and
    no Ray cluster is started for them."""
    from typer.testing import CliRunner

    from mvr.cli import app

    r = CliRunner().invoke(app, ["serve", str(index[0]), *args], terminal_width=200)
    assert r.exit_code == 2, r.output
    assert expected in " ".join(r.output.split()), r.output
    if "ray" in sys.modules:
        import ray

        assert not ray.is_initialized()


def test_http_partial_results_field(index: tuple[Path, list]) -> None:
    """The HTTP API over a sharded searcher without Ray (the ingress's code path): a shard
    down is 503 with Retry-After, ``partial_results: true`` answers the others flagged
    ``partial``; one process accepts the field and is always complete."""
    from fastapi.testclient import TestClient

    from serving.http import ServerSettings, create_app

    path, docs = index
    q = queries_like(docs, 3, seed=8)
    body = {"vectors": [v.tolist() for v in q], "k": 5, "return_texts": True}
    settings = ServerSettings(index_path=path, preload_encoder=False, batch_window_ms=0)
    with TestClient(create_app(settings)) as c:
        r = c.post("/search", json={**body, "partial_results": True})
        assert r.status_code == 200 and r.json()["partial"] is False
    sharded = open_local_shards(path, 3)
    real, sharded.shards[2] = sharded.shards[2], _Down()
    with TestClient(create_app(settings, searcher_factory=lambda s: sharded)) as c:
        r = c.post("/search", json=body)
        assert r.status_code == 503 and "Retry-After" in r.headers, r.text
        assert "shard(s) [2]" in r.json()["detail"]
        r = c.post("/search", json={**body, "partial_results": True})
        assert r.status_code == 200, r.text
        assert r.json()["partial"] is True and r.json()["missing_shards"] == [2]
        lo = int(sharded._bases[2])
        assert all(int(d.split("-")[1]) < lo for x in r.json()["results"] for d in x["ids"])
        st = c.get("/stats").json()["searcher"]
        assert [s["status"] for s in st["shards"]] == ["ok", "ok", "down"]
    real.close()


@pytest.mark.parametrize("k", [1, 2, 3])
def test_sharded_equals_single_process_with_token_lists(index_tokens: tuple[Path, list],
                                                       k: int) -> None:
    """The token lists' candidates merged at the ingress (floors from every shard's top
    kprime, tombstones counted for the floor) give exactly the single process's answer."""
    path, docs = index_tokens
    q = queries_like(docs, 40, seed=4)
    with Searcher.open(path) as single:
        assert single._tokens is not None and single._lists is None
        sharded = open_local_shards(path, k)
        try:
            assert sharded._has_tokens
            for kw in _SEARCHES:
                _assert_same(single.search(q, **kw), sharded.search(q, **kw), kw)
            keep = {"ids": [d for i, (d, _) in enumerate(docs) if i % 3]}
            _assert_same(single.search(q, filter=keep), sharded.search(q, filter=keep), "filter")
        finally:
            sharded.close()
