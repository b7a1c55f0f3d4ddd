"""What ``mvr index`` prints while it works: one bar (documents/s, ETA), the encoder's
truncation warnings summed once after it, and nothing at all with --no-progress / -q."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parents[1] / "encoders"))

from mvr.cli import app  # noqa: E402

LONG = " ".join(["the quick brown fox jumps over the lazy dog"] * 4)  # > 20 tokens


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from _tiny_checkpoints import build_stanford

    base = tmp_path_factory.mktemp("progress")
    ckpt = build_stanford(base / "ckpt")
    rows = [f"d{i}\t{LONG if i % 3 == 0 else 'a cat runs fast'}" for i in range(24)]
    (base / "docs.tsv").write_text("\n".join(rows) + "\n")
    return ckpt, base / "docs.tsv"


def _index(corpus: tuple[Path, Path], out: Path, *flags: str):  # type: ignore[no-untyped-def]
    ckpt, docs = corpus
    return CliRunner().invoke(app, ["index", str(docs), "--out", str(out), "--encoder", str(ckpt),
                                    "--batch-size", "4", "--pool-factor", "1", *flags])


def test_one_bar_then_one_summed_warning(corpus, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    r = _index(corpus, tmp_path / "a")
    assert r.exit_code == 0, r.output
    err = r.stderr
    assert "doc/s" in err and "indexing" in err
    assert "encoding documents" not in err  # no per-call encoder bar nested in it
    # 8 long documents over 6 build batches: one line, after the bar's last redraw
    lines = [ln for ln in re.split(r"[\r\n]", err) if "truncated" in ln]
    assert lines == ["warning: 8 of 24 documents exceeded 20 tokens and were truncated"]
    assert err.rindex("truncated") > err.rindex("doc/s")


@pytest.mark.parametrize("flags", [("--no-progress",), ("-q",)])
def test_no_progress_and_quiet_silence_every_bar(corpus, tmp_path: Path, flags) -> None:  # type: ignore[no-untyped-def]
    r = _index(corpus, tmp_path / "b", *flags)
    assert r.exit_code == 0, r.output
    assert "%|" not in r.stderr and "doc/s" not in r.stderr and "it/s" not in r.stderr
    if flags == ("-q",):
        assert r.stderr == ""
    else:
        assert r.stderr.count("truncated") == 1
    assert "indexed 24 documents" in r.stdout


def test_library_build_shows_one_bar_and_restores_the_encoder(  # type: ignore[no-untyped-def]
    corpus, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    import encoders
    from indexing import IndexWriter, build_index, read_corpus
    from mvr import IndexConfig, PoolingConfig

    ckpt, docs = corpus
    enc = encoders.load(ckpt, batch_size=4)  # progress on: 2 encoder batches per build batch
    rows = list(read_corpus(docs))
    config = IndexConfig(pooling=PoolingConfig(pool_factor=1), batch_size=6)  # 2 calls a stage
    build_index(tmp_path / "lib", rows[:12], enc, config)
    with IndexWriter(tmp_path / "lib", encoder=enc) as w:
        w.add(rows[12:], progress=True)
    err = capsys.readouterr().err
    assert "indexing" in err and "adding" in err and "encoding documents" not in err
    assert enc.progress is True  # given back after each stage
    msgs = [r.getMessage() for r in caplog.records if "truncated" in r.getMessage()]
    assert msgs == ["4 of 12 documents exceeded 20 tokens and were truncated"] * 2
