"""Edge cases of the token lists (serving._token_candidates) in sharded search: a shard
that answers the first fan-out but not the second (the lists' rows scored by their
shards) with ``partial_results``, and an index whose segments do not all have
approximate codes (an index extended by an older version), where the single process
uses neither the codes nor the token lists and every shard must do the same."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from index_testlib import (  # noqa: E402
    clustered_docs,
    queries_like,
    small_config,
)

from indexing import IndexWriter, build_index  # noqa: E402
from mvr import FirstStageConfig  # noqa: E402
from mvr._manifest import read_manifest, write_manifest  # noqa: E402
from serving import Searcher  # noqa: E402
from serving._sharded import ShardUnavailableError, open_local_shards  # noqa: E402

GONE = slice(5, 600, 23)  # deleted documents


def _build(path: Path, docs: list, **kw: object) -> Path:
    cfg = small_config(table_dtype="res4", codec_train_tokens=600, codec_centroids=32,
                       default_candidates=20, default_rerank=10,
                       first_stage=FirstStageConfig(min_rows=100_000), **kw)
    build_index(path, docs[:250], config=cfg, progress=False)
    with IndexWriter(path) as w:
        w.add(docs[250:450])
        w.add(docs[450:])
        w.delete([d for d, _ in docs[GONE]])
    return path


@pytest.fixture(scope="module")
def docs() -> list:
    return clustered_docs(600, seed=21)


@pytest.fixture(scope="module")
def index_tokens(tmp_path_factory: pytest.TempPathFactory, docs: list) -> Path:
    return _build(tmp_path_factory.mktemp("tok_edges") / "idx", docs, token_candidates=40,
                  token_nprobe=4, token_kprime=60)


class _NoSecondFanOut:
    """A shard that answers the first fan-out, then its process dies."""

    def __init__(self, real: object) -> None:
        self._real = real

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        if name in ("approx_rows", "exact"):
            def fail(*args, **kwargs):  # type: ignore[no-untyped-def]
                raise ConnectionError("replica died")
            return fail
        return getattr(self._real, name)


def test_a_shard_lost_between_the_fan_outs_is_partial_not_an_error(
        index_tokens: Path, docs: list) -> None:
    """partial_results: the lists' rows of a shard that died after the first fan-out have
    no approximate score; they are left out (the shard flagged missing), as its rows are
    from the exact re-rank, never a RuntimeError. Without partial_results: a 503."""
    q = queries_like(docs, 8, seed=5)
    sharded = open_local_shards(index_tokens, 3)
    try:
        assert sharded._has_tokens
        lo, hi = int(sharded._bases[1]), int(sharded._bases[2])
        full = sharded.search(q, k=10)
        sharded.shards[1] = _NoSecondFanOut(sharded.shards[1])
        with pytest.raises(ShardUnavailableError, match=r"\[1\]"):
            sharded.search(q, k=10)
        part = sharded.search(q, k=10, partial_results=True)
        assert part.partial and part.missing_shards == [1]
        shard1 = {docs[i][0] for i in range(lo, hi)}
        got = {d for ids in part.ids for d in ids}
        assert got and not shard1 & got
        assert not {d for d, _ in docs[GONE]} & got
        sharded.shards[1] = sharded.shards[1]._real  # back: complete again
        again = sharded.search(q, k=10)
        assert again.ids == full.ids and not again.partial
    finally:
        sharded.close()


def test_sharded_equals_single_process_when_a_segment_lacks_approximate_codes(
        tmp_path: Path, docs: list) -> None:
    """The last segment recorded without codes (as an older version's add writes it):
    the single process falls back to centroid ids and the centroid lists; each shard
    must too (a shard whose own segments all have codes built token lists, and the
    ingress failed merging them with the others' centroid lists)."""
    path = _build(tmp_path / "idx", docs, token_candidates=40, token_nprobe=4,
                  token_kprime=60, centroid_candidates=40, centroid_nprobe=4, approx_pq=8)
    man = read_manifest(path)
    assert all(s.get("has_acodes") for s in man["segments"])
    man["segments"][-1] = {**man["segments"][-1], "has_acodes": False}
    man.pop("manifest_sha256", None)
    write_manifest(path, man)
    q = queries_like(docs, 12, seed=6)
    with Searcher.open(path) as single:
        assert single._acodes is None and single._tokens is None and single._lists is not None
        sharded = open_local_shards(path, 3)
        try:
            assert not sharded._has_tokens
            for kw in ({}, {"candidates": 10, "rerank_candidates": 15}, {"k": 3}):
                a, b = single.search(q, **kw), sharded.search(q, **kw)
                assert a.ids == b.ids, kw
                for x, y in zip(a.scores, b.scores, strict=True):
                    np.testing.assert_allclose(x, y, rtol=0, atol=1e-5)
            for sh in sharded.shards:
                assert sh.searcher._acodes is None and sh.searcher._tokens is None
        finally:
            sharded.close()


def test_a_filtered_search_takes_the_token_budget_s_depths(index_tokens: Path, docs: list) -> None:
    """candidate_tokens shrinks the default first-stage N of a search; a filtered one (a
    filter keeping every live document, so the first-stage path runs) must search at the
    same N, in one process and sharded, and answer as the unfiltered search does."""
    import dataclasses

    q = queries_like(docs, 6, seed=7)
    keep = {"ids": [d for d, _ in docs]}
    with Searcher.open(index_tokens) as s:
        counts = s.manifest["counts"]
        budget = int(30 * counts["tokens"] / counts["documents"])  # (20 + 40) x mean -> half
        s.config = dataclasses.replace(s.config, candidate_tokens=budget)
        n, _ = s._depths(10, None, None)
        assert n < s.config.default_candidates
        seen: list[int] = []
        real = s.first_stage.search

        def record(qf, n_, allowed=None):  # type: ignore[no-untyped-def]
            seen.append(int(n_))
            return real(qf, n_, allowed=allowed)

        s.first_stage.search = record  # type: ignore[method-assign]
        plain = s.search(q, k=10)
        filtered = s.search(q, k=10, filter=keep)
        assert seen == [n, n], (n, seen)
        assert filtered.ids == plain.ids
    sharded = open_local_shards(index_tokens, 3)
    try:
        sharded.config = dataclasses.replace(sharded.config, candidate_tokens=budget)
        assert sharded._depths(10, None, None)[0] == n
        asked: list[int] = []
        for sh in sharded.shards:
            first = sh.first

            def rec(qf, q_, n_, *a, _first=first):  # type: ignore[no-untyped-def]
                asked.append(int(n_))
                return _first(qf, q_, n_, *a)

            sh.first = rec  # type: ignore[method-assign]
        sharded.search(q, k=10)
        sharded.search(q, k=10, filter=keep)
        assert asked == [n] * 6, (n, asked)
    finally:
        sharded.close()
