"""``mvr demo``: the corpus is the whole standard library's documentation, and each demo
question finds its module in the top 3 of a real build with the real default encoder."""

from __future__ import annotations

import importlib
import inspect
import sys
import warnings

import pytest
from typer.testing import CliRunner

from indexing.corpus import _SKIP_MODULES, stdlib_docs_corpus
from serving._demo import DEMO_QUESTIONS, passage_source, source_matches


def _has_docs(module: object, name: str) -> bool:
    """A module docstring, or a public class / function of its own with one (>= 4 words)."""
    def doc_ok(obj: object) -> bool:
        doc = getattr(obj, "__doc__", None)
        return isinstance(doc, str) and len(inspect.cleandoc(doc).split()) >= 4

    if doc_ok(module):
        return True
    return any(
        doc_ok(obj) for attr, obj in vars(module).items()
        if not attr.startswith("_") and getattr(obj, "__module__", None) == name
        and (inspect.isclass(obj) or inspect.isroutine(obj))
    )


@pytest.fixture(scope="module")
def corpus() -> list[tuple[str, str]]:
    return stdlib_docs_corpus()


def test_corpus_covers_every_documented_stdlib_module(corpus: list[tuple[str, str]]) -> None:
    tops = {pid.split(":", 1)[1].split(".", 1)[0].split("#", 1)[0]
            for pid, _ in corpus if pid.startswith("doc:")}
    expected = set()
    for name in sorted(sys.stdlib_module_names):
        if name.startswith("_") or name in _SKIP_MODULES:
            continue  # private, or an import with side effects (documented in corpus.py)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                module = importlib.import_module(name)
            except Exception:  # noqa: BLE001 (not importable on this platform)
                continue
            if _has_docs(module, name):
                expected.add(name)
    assert len(expected) > 150
    assert sorted(expected - tops) == []
    # the late-alphabet modules the demo once missed (it stopped after 2,000 passages)
    assert {"tempfile", "subprocess", "zipfile", "typing"} <= tops
    assert any(pid.startswith("topic:with") for pid, _ in corpus)
    assert len(corpus) > 5000


def test_passage_sources_for_a_person() -> None:
    assert passage_source("doc:json.decoder.JSONDecoder.decode") == (
        "module json.decoder (JSONDecoder.decode)")
    assert passage_source("doc:tempfile#2") == "module tempfile"
    assert passage_source("topic:with#0") == "language reference: with"
    assert source_matches("doc:builtins.list.sort", "list.sort")
    assert source_matches("doc:json.decoder.JSONDecoder", "json")
    assert source_matches("topic:with#1", "with")
    assert not source_matches("doc:jsonpickle.x", "json")
    assert not source_matches("topic:withitem", "with")
    assert not source_matches("doc:builtins.list.sorted", "list.sort")


@pytest.mark.slow
def test_demo_questions_find_their_module_in_the_top_3(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Builds the demo index for real (every passage, the default encoder): minutes."""
    import encoders
    from mvr.cli import app
    from serving import Searcher
    from serving._demo import build_demo_index

    enc = encoders.load("default", precision="fast", progress=False)  # as mvr demo
    out = tmp_path / "demo"
    manifest = build_demo_index(out, enc, progress=False, echo=lambda *_: None)
    assert manifest["counts"]["documents"] == len(stdlib_docs_corpus())
    with Searcher.open(out, encoder=enc) as s:
        res = s.search([q for q, _ in DEMO_QUESTIONS], k=3, candidates=500)
    for (question, expected), ids in zip(DEMO_QUESTIONS, res.ids, strict=True):
        assert any(source_matches(d, expected) for d in ids), (question, expected, ids)
    # the command reuses that index and says where each answer comes from
    r = CliRunner().invoke(app, ["demo", "--out", str(out), "--no-recall", "-k", "3"])
    assert r.exit_code == 0, r.output
    assert "using the existing demo index" in r.output
    assert r.output.count("rank ") == len(DEMO_QUESTIONS)  # every expected module found
    assert "module tempfile" in r.output and "module subprocess" in r.output
