"""``mvr add`` / ``mvr delete`` / ``mvr compact`` on tiny indexes (generated vectors, and
texts through a tiny Stanford ColBERT checkpoint that the index records)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parents[1] / "fixtures"))
sys.path.insert(0, str(Path(__file__).parents[1] / "encoders"))
from index_testlib import clustered_docs  # noqa: E402

import encoders  # noqa: E402
from mvr._manifest import read_manifest  # noqa: E402
from mvr.cli import app  # noqa: E402
from serving import Searcher  # noqa: E402

IDENTITY = {"name": "test-generated", "config": {"dim": 16}, "weights_sha256": "none"}


def _table(path: Path, docs: list) -> Path:  # type: ignore[type-arg]
    encoders.save_precomputed(path, [i for i, _ in docs], [v for _, v in docs],
                              texts=[f"text of {i}" for i, _ in docs], identity=IDENTITY)
    return path


@pytest.fixture
def index(tmp_path: Path) -> Path:
    docs = clustered_docs(90, seed=3)
    first = _table(tmp_path / "first.npz", docs[:60])
    out = tmp_path / "idx"
    r = CliRunner().invoke(app, ["index", str(first), "--out", str(out), "--pool-factor", "1",
                                 "--batch-size", "32", "--no-progress"])
    assert r.exit_code == 0, r.output
    _table(tmp_path / "more.npz", [(f"new-{i}", v) for i, v in docs[60:]])
    return out


def test_add_delete_compact(index: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["add", str(index), str(tmp_path / "more.npz"), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "added 30 documents" in r.output and "(90 live)" in r.output
    assert len(read_manifest(index)["segments"]) == 2

    r = runner.invoke(app, ["delete", str(index), "doc-3", "new-doc-70"])
    assert r.exit_code == 0, r.output
    assert "deleted 2 documents" in r.output and "88 live, 2 deleted" in r.output
    r = runner.invoke(app, ["delete", str(index), "doc-4", "no-such-id"])
    assert r.exit_code == 1 and "no-such-id" in r.output
    assert read_manifest(index)["counts"]["deleted"] == 2  # nothing deleted by the failed call

    r = runner.invoke(app, ["compact", str(index)])
    assert r.exit_code == 0, r.output
    assert "2 segment(s) -> 1, 88 documents" in r.output
    with Searcher.open(index, verify=True) as s:
        assert s.num_documents == 88
        assert "doc-3" not in s.ids and "new-doc-71" in s.ids


def test_add_refuses_other_vectors_and_a_held_lock(index: Path, tmp_path: Path) -> None:
    from filelock import FileLock

    from mvr.format import LOCK_NAME

    other = tmp_path / "other.npz"
    encoders.save_precomputed(other, ["x"], [clustered_docs(1)[0][1]], identity={
        **IDENTITY, "weights_sha256": "other"})
    r = CliRunner().invoke(app, ["add", str(index), str(other), "--no-progress"])
    assert r.exit_code == 1 and "encoder identity" in r.output and "other" in r.output
    with FileLock(str(index / LOCK_NAME)):
        r = CliRunner().invoke(app, ["compact", str(index)])
    assert r.exit_code == 1 and LOCK_NAME in r.output
    r = CliRunner().invoke(app, ["add", str(index), str(tmp_path / "missing.tsv")])
    assert r.exit_code == 2 and "not found" in r.output


def test_add_texts_with_the_recorded_checkpoint(tmp_path: Path) -> None:
    from _tiny_checkpoints import build_stanford

    ckpt = build_stanford(tmp_path / "ckpt")
    (tmp_path / "a.tsv").write_text("a1\tthe quick brown fox\na2\ta cat runs fast\n")
    (tmp_path / "b.tsv").write_text("b1\tthe lazy dog sleeps on the mat\n")
    runner = CliRunner()
    out = tmp_path / "idx"
    r = runner.invoke(app, ["index", str(tmp_path / "a.tsv"), "--out", str(out), "--encoder",
                            str(ckpt), "--no-progress", "--pool-factor", "1"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["add", str(out), str(tmp_path / "b.tsv"), "--no-progress"])
    assert r.exit_code == 0, r.output
    with Searcher.open(out) as s:
        assert s.search(["lazy dog on a mat"], k=1).ids[0] == ["b1"]
