"""``mvr index`` and ``mvr search`` on precomputed vectors and on a TSV corpus."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parents[1] / "fixtures"))
from index_testlib import clustered_docs  # noqa: E402

import encoders  # noqa: E402
from indexing._cli import index_command  # noqa: E402
from mvr._manifest import read_manifest  # noqa: E402
from serving import Searcher  # noqa: E402
from serving._cli import search_command  # noqa: E402

app = typer.Typer()
app.command("index")(index_command)
app.command("search")(search_command)


@pytest.fixture
def precomputed(tmp_path: Path) -> Path:
    docs = clustered_docs(120, seed=12, dim=16)
    path = tmp_path / "vectors.npz"
    encoders.save_precomputed(path, [i for i, _ in docs], [v for _, v in docs],
                              texts=[f"text of {i}" for i, _ in docs])
    return path


def test_index_and_search_precomputed(tmp_path: Path, precomputed: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "idx"
    r = runner.invoke(app, ["index", str(precomputed), "--out", str(out), "--pool-factor", "1",
                            "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "indexed 120 documents" in r.output
    m = read_manifest(out)
    assert m["encoder"] == encoders.load(str(precomputed)).identity
    assert m["config"]["fde"]["dim"] == 16
    # queries are looked up by id in the precomputed table
    r = runner.invoke(app, ["search", str(out), "doc-7", "doc-9", "-k", "3", "--encoder",
                            str(precomputed)])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0] == "query: doc-7"
    assert lines[1].split()[2] == "doc-7" and lines[1].endswith("text of doc-7")
    assert "query: doc-9" in r.output
    # again: refused without --overwrite, resumable no-op with --resume after completion
    r = runner.invoke(app, ["index", str(precomputed), "--out", str(out), "--no-progress"])
    assert r.exit_code == 1 and "already holds an index" in r.output


def test_cli_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["index", str(tmp_path / "missing.tsv"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "not found" in r.output
    r = runner.invoke(app, ["search", str(tmp_path / "nothing"), "q"])
    assert r.exit_code == 1 and "does not exist" in r.output


def test_limit_and_first_stage_option(tmp_path: Path, precomputed: Path) -> None:
    out = tmp_path / "idx"
    r = CliRunner().invoke(app, ["index", str(precomputed), "--out", str(out), "--limit", "50",
                                 "--first-stage", "hnsw", "--table-dtype", "int8",
                                 "--no-progress"])
    assert r.exit_code == 0, r.output
    with Searcher.open(out) as s:
        assert s.num_documents == 50
        assert s.config.first_stage.kind == "hnsw" and s.config.table_dtype == "int8"
        assert s.manifest["segments"][0]["first_stage"] == "exact"  # below min_rows


def test_cli_defaults_are_the_library_defaults(tmp_path: Path, precomputed: Path) -> None:
    """Options left out build what ``build_index`` builds at ``IndexConfig()``: the CLI once
    defaulted to an ``exact`` first stage (40 KB of float32 FDE per document in RAM) and a
    float16 table, so ``mvr index CORPUS`` at defaults could not build a large corpus."""
    from mvr import IndexConfig

    out = tmp_path / "idx"
    r = CliRunner().invoke(app, ["index", str(precomputed), "--out", str(out), "--no-progress"])
    assert r.exit_code == 0, r.output
    got = read_manifest(out)["config"]
    want = IndexConfig().resolved(16).to_dict()
    for key in ("table_dtype", "first_stage", "pooling", "approx", "approx_pq", "keep_fdes"):
        assert got[key] == want[key], key
