"""``evaluate`` / ``mvr eval`` and their judgments: unknown judged ids (one warning, then
trec_eval semantics), BEIR's ignore_identical_ids, and datasets without qrels."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parents[1] / "fixtures"))
from index_testlib import HashEncoder, small_config  # noqa: E402

from indexing import build_index, read_corpus  # noqa: E402
from serving.evaluation import evaluate, format_report, judged_metrics  # noqa: E402

N_DOCS, N_QUERIES = 80, 12


def _dataset(root: Path, *, qrels: bool = True, queries_are_docs: bool = False) -> Path:
    """Documents of random words; query j = 2 words of document t_j (judged relevant) and
    a word of no document. With ``queries_are_docs`` the query id is the id of another
    document whose text is the query text (so that it tops the ranking, as in ArguAna)."""
    rng = np.random.default_rng(7)
    root.mkdir(parents=True)
    docs = [{"_id": f"d{i}", "text": " ".join(f"w{int(x)}" for x in rng.integers(0, 300, 12))}
            for i in range(N_DOCS)]
    queries, lines = [], ["query-id\tcorpus-id\tscore"]
    for j in range(N_QUERIES):
        target = 2 * j
        text = " ".join(docs[target]["text"].split()[:2] + [f"u{j}"])
        qid = f"d{2 * j + 1}" if queries_are_docs else f"q{j}"
        if queries_are_docs:
            docs[2 * j + 1]["text"] = text
        queries.append({"_id": qid, "text": text})
        lines.append(f"{qid}\td{target}\t1")
    with open(root / "corpus.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(d) + "\n" for d in docs)
    with open(root / "queries.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(q) + "\n" for q in queries)
    if qrels:
        (root / "qrels").mkdir()
        (root / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    base = tmp_path_factory.mktemp("judgments")
    enc = HashEncoder()
    out = {}
    for name, kw in (("plain", {}), ("identical", {"queries_are_docs": True})):
        root = _dataset(base / name, **kw)
        build_index(base / f"{name}.mvr", read_corpus(root), enc, small_config(), progress=False)
        out[name] = (root, base / f"{name}.mvr")
    return base, enc, out


def _qrels(root: Path) -> dict[str, dict[str, int]]:
    q: dict[str, dict[str, int]] = {}
    for line in (root / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        a, b, g = line.split("\t")
        q.setdefault(a, {})[b] = int(g)
    return q


def test_unknown_judged_ids_warn_once_and_count_as_never_retrieved(  # type: ignore[no-untyped-def]
    built, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    base, enc, sets = built
    root, index = sets["plain"]
    ghost = tmp_path / "ghost"
    shutil.copytree(root, ghost)
    with open(ghost / "qrels" / "test.tsv", "a") as f:
        f.write("q0\tghost-1\t1\nq3\tghost-2\t1\nq3\tghost-1\t1\n")
    caplog.set_level(logging.WARNING, logger="serving.evaluation")
    report = evaluate(index, ghost, encoder=enc, progress=False, plots=False)
    warnings = [r for r in caplog.records if r.name == "serving.evaluation"]
    assert len(warnings) == 1
    msg = warnings[0].getMessage()
    assert "2 judged document id(s)" in msg and "'ghost-1'" in msg and "'ghost-2'" in msg
    assert f"{ghost / 'qrels' / 'test.tsv'}:{N_QUERIES + 2}" in msg  # first line judging one
    assert report["dataset"]["unknown_judged"] == {"count": 2, "ids": ["ghost-1", "ghost-2"]}
    clean = evaluate(index, root, encoder=enc, progress=False, plots=False)
    # trec_eval semantics: the ghosts are relevant and never retrieved
    qids = [f"q{j}" for j in range(N_QUERIES)]
    with_ghosts = _qrels(ghost)
    from serving import Searcher

    with Searcher.open(index, encoder=enc) as s:
        exh = s.exhaustive([json.loads(x)["text"] for x in
                            (root / "queries.jsonl").read_text().splitlines()], k=100).ids
    expected = judged_metrics(with_ghosts, qids, exh)
    assert report["judged"]["exhaustive"] == pytest.approx(expected)
    assert report["judged"]["exhaustive"]["recall@100"] < clean["judged"]["exhaustive"]["recall@100"]
    assert "2 judged document id(s) are not in the index" in format_report(report)


def test_identical_ids_are_dropped_by_default(built) -> None:  # type: ignore[no-untyped-def]
    base, enc, sets = built
    root, index = sets["identical"]
    qrels = _qrels(root)
    qids = list(qrels)
    dropped = evaluate(index, root, encoder=enc, progress=False, plots=False)
    kept = evaluate(index, root, encoder=enc, progress=False, plots=False,
                    ignore_identical_ids=False)
    from serving import Searcher

    texts = [json.loads(x)["text"] for x in (root / "queries.jsonl").read_text().splitlines()]
    with Searcher.open(index, encoder=enc) as s:
        exh = s.exhaustive(texts, k=100).ids
    assert sum(e[0] == q for q, e in zip(qids, exh, strict=True)) >= N_QUERIES // 2  # self on top
    no_self = [[d for d in e if d != q] for q, e in zip(qids, exh, strict=True)]
    assert dropped["judged"]["exhaustive"] == pytest.approx(judged_metrics(qrels, qids, no_self))
    assert kept["judged"]["exhaustive"] == pytest.approx(judged_metrics(qrels, qids, exh))
    assert dropped["judged"]["exhaustive"]["mrr@10"] > kept["judged"]["exhaustive"]["mrr@10"]
    assert dropped["settings"]["ignore_identical_ids"] is True


def test_dataset_without_qrels_is_evaluated_against_exhaustive(  # type: ignore[no-untyped-def]
    built, tmp_path: Path
) -> None:
    base, enc, sets = built
    root, index = sets["plain"]
    bare = tmp_path / "bare"
    shutil.copytree(root, bare, ignore=shutil.ignore_patterns("qrels"))
    report = evaluate(index, bare, encoder=enc, progress=False, output_dir=tmp_path / "out")
    assert report["judged"] is None and report["gap"] is None
    assert report["dataset"]["has_judgments"] is False and report["dataset"]["queries"] == N_QUERIES
    assert "no relevance judgments" in report["dataset"]["note"]
    assert report["end_to_end"]["recall@10_vs_exhaustive"] > 0.5
    text = format_report(report)
    assert "no relevance judgments" in text and "Against the judgments" not in text
    assert "Against exhaustive MaxSim" in text
    assert (tmp_path / "out" / "plots" / "recall_vs_n.png").is_file()
    assert not (tmp_path / "out" / "plots" / "ndcg_vs_n.png").exists()


def _vectors(base: Path, root: Path, enc: HashEncoder) -> Path:
    import encoders

    vec = base / f"vectors-{root.name}"
    if not vec.exists():
        vec.mkdir()
        ids, texts = zip(*read_corpus(root), strict=True)
        encoders.save_precomputed(vec / "documents.npz", list(ids),
                                  enc.encode_documents(list(texts)), identity=enc.identity)
        qs = [json.loads(x) for x in (root / "queries.jsonl").read_text().splitlines()]
        encoders.save_precomputed(vec / "queries.npz", [q["_id"] for q in qs],
                                  enc.encode_queries([q["text"] for q in qs]),
                                  [q["text"] for q in qs], identity=enc.identity)
    return vec


def test_cli_flags_and_messages(built, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from mvr.cli import app

    base, enc, sets = built
    root, index = sets["identical"]
    vec = _vectors(base, root, enc)
    runner = CliRunner()
    args = ["eval", str(index), "-d", str(root), "--encoder", str(vec), "--no-progress",
            "--no-plots", "--json", "--candidates", "10,20"]
    kept = runner.invoke(app, [*args, "--out", str(tmp_path / "kept"), "--keep-identical-ids"])
    assert kept.exit_code == 0, kept.output
    dropped = runner.invoke(app, [*args, "--output", str(tmp_path / "dropped")])  # the alias
    assert dropped.exit_code == 0, dropped.output
    k, d = json.loads(kept.stdout), json.loads(dropped.stdout)
    assert k["settings"]["ignore_identical_ids"] is False and d["settings"]["ignore_identical_ids"]
    assert d["judged"]["exhaustive"]["mrr@10"] > k["judged"]["exhaustive"]["mrr@10"]
    assert (tmp_path / "dropped" / "report.json").is_file()

    ghost = tmp_path / "ghost"
    shutil.copytree(root, ghost)
    with open(ghost / "qrels" / "test.tsv", "a") as f:
        f.write("d1\tghost-9\t1\n")
    r = runner.invoke(app, ["eval", str(index), "-d", str(ghost), "--encoder", str(vec),
                            "--no-progress", "--no-plots", "--out", str(tmp_path / "g")])
    assert r.exit_code == 0, r.output
    assert r.stderr.count("warning: 1 judged document id(s) are not in the index") == 1
    assert "'ghost-9'" in r.stderr
    assert "%|" not in r.stderr and "q/s" not in r.stderr  # --no-progress: no bar at all
    r = runner.invoke(app, ["eval", str(index), "-d", str(ghost), "--encoder", str(vec), "-q",
                            "--no-plots", "--out", str(tmp_path / "g")])
    assert r.exit_code == 0 and "warning" not in r.stderr
