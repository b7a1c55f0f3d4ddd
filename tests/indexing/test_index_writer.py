"""IndexWriter: add (segments), delete (tombstones), compact, the lock, snapshots."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "fixtures"))
from index_testlib import (  # noqa: E402
    assert_topk_matches,
    brute_maxsim,
    clustered_docs,
    queries_like,
    small_config,
)

from indexing import IndexWriter, build_index  # noqa: E402
from mvr._manifest import read_manifest  # noqa: E402
from mvr.errors import ConfigError, DocumentNotFoundError, IndexLockedError  # noqa: E402
from serving import Searcher  # noqa: E402


def _check_exhaustive(s: Searcher, live: dict[str, np.ndarray], q, k: int = 5) -> None:  # type: ignore[no-untyped-def]
    ids = list(live)
    ref = brute_maxsim(q, [live[i].astype(np.float16) for i in ids])
    for res in (s.exhaustive(q, k=k), s.search(q, k=k, candidates=len(ids) + 5)):
        for qi in range(len(q)):
            assert_topk_matches(res.ids[qi], res.scores[qi], ref[qi], ids, k)


@pytest.fixture
def index(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    docs = clustered_docs(150, seed=3)
    build_index(tmp_path, docs, None, small_config(), progress=False)
    return tmp_path, dict(docs)


def test_add_delete_compact(index) -> None:  # type: ignore[no-untyped-def]
    path, live = index
    q = queries_like(list(live.items()), 5)
    new = [(f"new-{i}", v) for i, (_, v) in enumerate(clustered_docs(40, seed=9))]
    with IndexWriter(path) as w:
        assert w.add(new) == 40
        live.update(new)
        m = read_manifest(path)
        assert [s["documents"] for s in m["segments"]] == [150, 40]
        with Searcher.open(path) as s:
            assert s.num_documents == 190
            _check_exhaustive(s, live, q)
        with Searcher.open(path) as s:
            gone = ["doc-0", "new-3"] + [ids[0] for ids in s.exhaustive(q, k=1).ids]
        gone = list(dict.fromkeys(gone))
        assert w.delete(gone) == len(gone)
        for g in gone:
            live.pop(g)
        with pytest.raises(DocumentNotFoundError, match="'doc-0'"):
            w.delete(["doc-0", "doc-1"])  # doc-0 already deleted: nothing happens
        with Searcher.open(path) as s:
            assert s.num_documents == 190 - len(gone)
            _check_exhaustive(s, live, q)
            first = s.search(q, k=50, candidates=300, rerank=False)
            assert not set(gone) & {d for ids in first.ids for d in ids}
            assert all(len(ids) == 50 for ids in first.ids)
            with pytest.raises(DocumentNotFoundError, match=repr(gone[0])):
                s.rerank(q[:1], [[gone[0], "doc-5"]])
            with pytest.raises(DocumentNotFoundError):
                s.get_texts([gone[0]])
        m = w.compact()
        assert len(m["segments"]) == 1 and m["tombstones"] is None
        assert m["counts"] == {"documents": len(live), "live": len(live), "deleted": 0,
                               "tokens": sum(len(v) for v in live.values())}
        with Searcher.open(path) as s:
            _check_exhaustive(s, live, q)
        # a deleted id may come back
        w.add([(gone[0], live["doc-7"])])
        with Searcher.open(path) as s:
            assert gone[0] in s.ids and s.num_documents == len(live) + 1
        with pytest.raises(ConfigError, match="duplicate document id 'doc-7'"):
            w.add([("doc-7", live["doc-7"])])
    assert sorted(p.name for p in (path / "segments").iterdir()) == [
        s["name"] for s in read_manifest(path)["segments"]]


def test_single_writer_lock(index) -> None:  # type: ignore[no-untyped-def]
    path, live = index
    with IndexWriter(path):
        with pytest.raises(IndexLockedError, match=r"\.lock"):
            IndexWriter(path)
        with pytest.raises(IndexLockedError):
            build_index(path, list(live.items()), None, small_config(), progress=False,
                        overwrite=True)
    with IndexWriter(path) as w:  # released
        assert w.manifest["counts"]["documents"] == 150


def test_open_searcher_keeps_its_snapshot(index) -> None:  # type: ignore[no-untyped-def]
    path, live = index
    q = queries_like(list(live.items()), 4)
    for mode in ("memory", "mmap"):
        with Searcher.open(path, mode=mode) as old:
            before = old.search(q, k=5)
            ex_before = old.exhaustive(q, k=5)
            with IndexWriter(path) as w:
                w.add(clustered_docs(30, seed=11)[:0] + [("extra", live["doc-1"])])
                w.delete([before.ids[0][0]])
                w.compact()
            again = old.search(q, k=5)
            assert again.ids == before.ids
            assert old.exhaustive(q, k=5).ids == ex_before.ids
            assert old.get_texts([before.ids[0][0]]) == [None]
        with Searcher.open(path) as new:
            assert before.ids[0][0] not in new.search(q, k=5).ids[0]
        with IndexWriter(path) as w:  # restore for the next mode
            w.add([(before.ids[0][0], live[before.ids[0][0]])])
            w.delete(["extra"])


def test_writer_that_fails_to_open_releases_the_lock(tmp_path: Path) -> None:
    import json

    from index_testlib import HashEncoder

    from mvr.errors import EncoderMismatchError

    build_index(tmp_path, [("a", "alpha beta"), ("b", "gamma")], HashEncoder(seed=0),
                small_config(), progress=False)
    with pytest.raises(EncoderMismatchError, match="encoder identity") as failed:
        IndexWriter(tmp_path, encoder=HashEncoder(seed=1))
    with IndexWriter(tmp_path, encoder=HashEncoder(seed=0)) as w:  # the lock was released
        assert w.manifest["counts"]["documents"] == 2
    mpath = tmp_path / "manifest.json"
    good = mpath.read_text()
    bad = json.loads(good)
    bad["config"]["bogus"] = 1
    del bad["manifest_sha256"]  # as a manifest without a self-checksum (else that refuses it)
    mpath.write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match="unknown keys") as failed_config:
        IndexWriter(tmp_path)
    mpath.write_text(good)
    with IndexWriter(tmp_path) as w:
        assert w.manifest["counts"]["documents"] == 2
    del failed, failed_config  # held until here: the writers they reference stay alive


def test_delete_takes_a_single_id_as_one_id(index) -> None:  # type: ignore[no-untyped-def]
    path, live = index
    with IndexWriter(path) as w:
        assert w.delete("doc-5") == 1
        assert w.manifest["counts"]["deleted"] == 1
        with pytest.raises(DocumentNotFoundError, match="'doc-5'"):
            w.delete("doc-5")
    with Searcher.open(path) as s:
        assert "doc-5" not in s._id_to_row and s.num_documents == 149
