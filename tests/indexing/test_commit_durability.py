"""A commit never points at unsynced files: before ``manifest.json`` is replaced, every
file the new manifest lists (that the previous one did not) and every folder from its
own up to the index root have been fsynced.

The real syscalls run: ``os.fsync`` and ``os.replace`` are wrapped by a spy that records
which path each call was for, in order.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "fixtures"))
from index_testlib import clustered_docs, small_config  # noqa: E402

from indexing import IndexWriter, build_index  # noqa: E402
from mvr import FirstStageConfig  # noqa: E402
from mvr._manifest import read_manifest  # noqa: E402


@pytest.fixture
def syscalls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.path.realpath(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst, **kw) -> None:  # type: ignore[no-untyped-def]
        real_replace(src, dst, **kw)
        events.append(("replace", os.path.realpath(dst)))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


def _assert_synced_before_commit(events: list[tuple[str, str]], root: Path,
                                 before: dict) -> None:
    root = root.resolve()
    manifest = str(root / "manifest.json")
    commit = max(i for i, e in enumerate(events) if e == ("replace", manifest))
    synced = {p for kind, p in events[:commit] if kind == "fsync"}
    new = [rel for rel, e in read_manifest(root)["files"].items() if before.get(rel) != e]
    assert new
    for rel in new:
        p = root / rel
        assert str(p) in synced, f"{rel} not fsynced before the commit"
        for d in p.parents:
            assert str(d) in synced, f"folder {d} of {rel} not fsynced before the commit"
            if d == root:
                break
    assert ("fsync", str(root)) in events[commit + 1:], "the manifest's rename was not synced"


def test_every_commit_syncs_its_new_files_and_folders(tmp_path: Path, syscalls) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "idx"
    cfg = small_config(batch_size=16,
                       first_stage=FirstStageConfig(kind="hnsw", min_rows=1, hnsw_m=8))
    build_index(root, clustered_docs(50, seed=1), None, cfg, progress=False)
    assert any(rel.endswith("first_stage.faiss") for rel in read_manifest(root)["files"])
    _assert_synced_before_commit(syscalls, root, {})
    with IndexWriter(root) as w:
        for op in (lambda: w.add([(f"new-{i}", v) for i, (_, v) in
                                  enumerate(clustered_docs(20, seed=2))]),
                   lambda: w.delete(["doc-3", "new-1"]),
                   lambda: w.compact()):
            before = read_manifest(root)["files"]
            syscalls.clear()
            op()
            _assert_synced_before_commit(syscalls, root, before)


def test_atomic_write_file_syncs_and_cleans_up(tmp_path: Path, syscalls) -> None:  # type: ignore[no-untyped-def]
    from mvr._durable import atomic_write_file

    target = tmp_path / "table.npz"
    atomic_write_file(target, lambda tmp: _save(tmp, np.arange(3)))  # a writer given a path
    assert np.load(target).tolist() == [0, 1, 2]
    fsynced = [p for kind, p in syscalls if kind == "fsync"]
    replaced = syscalls.index(("replace", str(target.resolve())))
    assert any(k == "fsync" and "/.table.tmp-" in p for k, p in syscalls[:replaced])
    assert str(tmp_path.resolve()) in fsynced
    with pytest.raises(RuntimeError, match="boom"):
        atomic_write_file(target, lambda tmp: (tmp.write_bytes(b"half"), _boom()))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.npz"]  # no temp left
    assert np.load(target).tolist() == [0, 1, 2]  # the old content stays


def test_fsync_tree_syncs_every_file_and_folder(tmp_path: Path, syscalls) -> None:  # type: ignore[no-untyped-def]
    from mvr._durable import fsync_tree

    (tmp_path / "a" / "b").mkdir(parents=True)
    for rel in ("x", "a/y", "a/b/z"):
        (tmp_path / rel).write_text(rel)
    fsync_tree(tmp_path)
    order = [p for kind, p in syscalls if kind == "fsync"]
    root = tmp_path.resolve()
    for rel in ("x", "a/y", "a/b/z", "a/b", "a", "."):
        assert str((root / rel).resolve()) in order, rel
    assert order.index(str(root / "a/b/z")) < order.index(str(root / "a/b")) < \
        order.index(str(root / "a")) < order.index(str(root))


def _save(path: Path, a: np.ndarray) -> None:
    with open(path, "wb") as f:  # np.save given a name would add ".npy"
        np.save(f, a)


def _boom() -> None:
    raise RuntimeError("boom")
