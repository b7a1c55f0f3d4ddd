"""``evaluate`` / ``mvr eval`` end to end on a small real index, checked against
brute-force MaxSim, brute-force candidate counts and the written run files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parents[1] / "fixtures"))
from index_testlib import HashEncoder, brute_maxsim, small_config  # noqa: E402

import encoders  # noqa: E402
from indexing import build_index, read_corpus  # noqa: E402
from mvr import FirstStageConfig  # noqa: E402
from mvr.cli import app  # noqa: E402
from mvr.errors import DatasetError  # noqa: E402
from serving import Searcher  # noqa: E402
from serving.evaluation import (  # noqa: E402
    evaluate,
    format_report,
    judged_metrics,
    parse_fde_spec,
    parse_sweep,
    read_trec_run,
)

N_DOCS = 200
N_QUERIES = 30
GRID = (5, 10, 20, 50, 100)


def _make_dataset(root: Path, seed: int = 0) -> Path:
    """Topic documents over a word vocabulary; each query = 2 words of its target
    document + 2 words that occur in no document (so exact MaxSim has no ties)."""
    rng = np.random.default_rng(seed)
    (root / "qrels").mkdir(parents=True)
    docs = []
    for i in range(N_DOCS):
        topic = int(rng.integers(0, 15))
        n = int(rng.integers(4, 20))
        words = [
            f"w{topic * 30 + int(rng.integers(30))}"
            if rng.random() < 0.7
            else f"w{int(rng.integers(450))}"
            for _ in range(n)
        ]
        docs.append(
            {
                "_id": f"d{i}",
                "title": f"w{topic * 30}" if i % 3 == 0 else "",
                "text": " ".join(words),
            }
        )
    with open(root / "corpus.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(d) + "\n" for d in docs)
    queries, qrels = [], ["query-id\tcorpus-id\tscore"]
    for j in range(N_QUERIES):
        target = int(rng.integers(N_DOCS))
        words = (docs[target]["title"] + " " + docs[target]["text"]).split()
        text = " ".join([*rng.choice(words, size=2), f"n{j}", f"n{j + 100}"])
        queries.append({"_id": f"q{j}", "text": text})
        qrels.append(f"q{j}\td{target}\t2")
        qrels.append(f"q{j}\td{(target + 1) % N_DOCS}\t1")
    queries.append({"_id": "unjudged", "text": "w1 w2"})
    with open(root / "queries.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(q) + "\n" for q in queries)
    (root / "qrels" / "test.tsv").write_text("\n".join(qrels) + "\n")
    return root


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    base = tmp_path_factory.mktemp("eval")
    root = _make_dataset(base / "ds")
    enc = HashEncoder()
    build_index(base / "index", read_corpus(root), enc,
                small_config(first_stage=FirstStageConfig(kind="exact")), progress=False)
    return base, root, enc


def _brute_ranking(
    root: Path, enc: HashEncoder
) -> tuple[list[str], list[list[str]], list[dict[str, float]]]:
    """Exhaustive MaxSim by brute force over the raw (float16-stored) vectors: query ids,
    rankings (ties by corpus order) and every document's score per query."""
    ids, texts = zip(*read_corpus(root), strict=True)
    docs = [v.astype(np.float16) for v in enc.encode_documents(list(texts))]
    queries = [json.loads(line) for line in (root / "queries.jsonl").read_text().splitlines()]
    queries = [q for q in queries if q["_id"] != "unjudged"]
    scores = brute_maxsim(enc.encode_queries([q["text"] for q in queries]), docs)
    ranking = [[ids[j] for j in np.lexsort((np.arange(len(ids)), -row))] for row in scores]
    by_id = [dict(zip(ids, row.tolist(), strict=True)) for row in scores]
    return [q["_id"] for q in queries], ranking, by_id


def test_evaluate_against_brute_force(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base, root, enc = setup
    out = tmp_path / "out"
    report = evaluate(
        base / "index",
        root,
        encoder=enc,
        output_dir=out,
        candidates=GRID,
        ks=(1, 10, 100),
        search_candidates=20,
        progress=False,
    )
    qids, brute, brute_scores = _brute_ranking(root, enc)
    qrels: dict[str, dict[str, int]] = {}
    for line in (root / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        q, d, g = line.split("\t")
        qrels.setdefault(q, {})[d] = int(g)
    assert report["dataset"]["queries"] == N_QUERIES  # the unjudged query is left out

    # exhaustive MaxSim: the same ranking as brute force, hence the same judged metrics
    exh_run = read_trec_run(out / "runs" / "exhaustive.trec")
    for q, ranking, by_id in zip(qids, brute, brute_scores, strict=True):  # tie-tolerant
        got = np.array([s for _, s in exh_run[q]])
        want = np.array([by_id[d] for d in ranking[:100]])
        np.testing.assert_allclose(got, want, atol=1e-3)
        np.testing.assert_allclose(got, [by_id[d] for d, _ in exh_run[q]], atol=1e-3)
    exh_ids = [[d for d, _ in exh_run[q]] for q in qids]
    expected = judged_metrics(qrels, qids, exh_ids)
    for name, value in expected.items():
        assert report["judged"]["exhaustive"][name] == pytest.approx(value, abs=1e-9)

    # candidate recall of the exhaustive top-k: a brute-force count over the run files
    first = read_trec_run(out / "runs" / "first_stage.trec")
    section = report["candidate_recall"]["exact"]
    assert section["ns"] == list(GRID)
    for kk in (1, 10, 100):
        for j, n in enumerate(GRID):
            counts = [
                len({d for d, _ in first[q][:n]} & set(b[:kk])) / kk
                for q, b in zip(qids, brute, strict=True)
            ]
            assert section["recall"][str(kk)][j] == pytest.approx(np.mean(counts), abs=1e-12)
        assert np.all(np.diff(section["recall"][str(kk)]) >= 0)

    # re-ranking every document reproduces exhaustive; the real search run matches search()
    by_all = report["judged_by_candidates"]["100"]
    reranked = read_trec_run(out / "runs" / "reranked.trec")
    with Searcher.open(base / "index", encoder=enc) as s:
        direct = s.search(
            [json.loads(x)["text"] for x in (root / "queries.jsonl").read_text().splitlines()][
                :N_QUERIES
            ],
            k=20,
            candidates=20,
        )
    assert [[d for d, _ in reranked[q]] for q in qids] == direct.ids
    top10 = [[d for d, _ in reranked[q][:10]] for q in qids]
    e2e = np.mean([len(set(t) & set(b[:10])) / 10 for t, b in zip(top10, exh_ids, strict=True)])
    assert report["end_to_end"]["recall@10_vs_exhaustive"] == pytest.approx(e2e)
    assert report["judged"]["mvr"]["ndcg@10"] == pytest.approx(
        judged_metrics(qrels, qids, top10, ["ndcg@10"])["ndcg@10"]
    )
    assert report["gap"]["ndcg@10"] == pytest.approx(
        report["judged"]["exhaustive"]["ndcg@10"] - report["judged"]["mvr"]["ndcg@10"]
    )
    assert 0.0 <= by_all["recall@10_vs_exhaustive"] <= 1.0

    # outputs: JSON equal to the return value, PNG plots, a printed table
    assert json.loads((out / "report.json").read_text())["judged"] == report["judged"]
    for png in ("recall_vs_n.png", "ndcg_vs_n.png"):
        assert (out / "plots" / png).read_bytes()[:4] == b"\x89PNG"
    text = format_report(report)
    assert "Candidates needed" in text and "exhaustive MaxSim" in text


def test_rerank_of_all_candidates_equals_exhaustive(setup) -> None:  # type: ignore[no-untyped-def]
    base, root, enc = setup
    report = evaluate(
        base / "index", root, encoder=enc, candidates=(10, 1000), ks=(10,), progress=False
    )
    assert report["settings"]["candidates"] == [10, N_DOCS]  # clipped to the corpus
    full = report["judged_by_candidates"][str(N_DOCS)]
    assert full["recall@10_vs_exhaustive"] == pytest.approx(1.0)
    # The same documents; near-ties (hash-word vectors tie often) may swap places between
    # the exhaustive kernel and the candidate kernel (float32 sums in another order).
    assert full["recall@100"] == pytest.approx(report["judged"]["exhaustive"]["recall@100"])
    for name in ("ndcg@10", "mrr@10", "map@100"):
        assert full[name] == pytest.approx(report["judged"]["exhaustive"][name], abs=0.01)
    assert report["candidate_recall"]["exact"]["needed"]["10"]["0.99"] <= N_DOCS


def test_exhaustive_is_cached(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base, root, enc = setup
    first = evaluate(
        base / "index",
        root,
        encoder=enc,
        output_dir=tmp_path,
        candidates=(10, 20),
        plots=False,
        progress=False,
    )
    again = evaluate(
        base / "index",
        root,
        encoder=enc,
        output_dir=tmp_path,
        candidates=(50,),
        plots=False,
        progress=False,
    )
    assert not first["exhaustive_cached"] and again["exhaustive_cached"]
    assert again["judged"]["exhaustive"] == first["judged"]["exhaustive"]
    assert list((tmp_path / "cache").glob("exhaustive-*.npz"))


def test_dataset_errors_name_file_and_line(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base, root, enc = setup
    bad = tmp_path / "bad"
    _make_dataset(bad)
    qrels = bad / "qrels" / "test.tsv"
    lines = qrels.read_text().splitlines()
    lines.insert(3, "q1\tnot-a-doc\t1")
    qrels.write_text("\n".join(lines) + "\n")
    # an unknown judged id is reported (tests/serving/test_eval_judgments.py), not fatal
    report = evaluate(base / "index", bad, encoder=enc, progress=False, plots=False)
    assert report["dataset"]["unknown_judged"] == {"count": 1, "ids": ["not-a-doc"]}
    lines[3] = "q1\td1"
    qrels.write_text("\n".join(lines) + "\n")
    with pytest.raises(
        DatasetError, match=r"test\.tsv:4: expected 'query-id<TAB>corpus-id<TAB>score'"
    ):
        evaluate(base / "index", bad, encoder=enc, progress=False)
    lines[3] = "nope\td1\t1"
    qrels.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"test\.tsv:4: query id 'nope' is not in"):
        evaluate(base / "index", bad, encoder=enc, progress=False)


def _precomputed(base: Path, root: Path, enc: HashEncoder) -> Path:
    """Documents + queries tables of the hash encoder, as scripts/encode_corpus.py writes."""
    vec = base / "vectors"
    if not vec.exists():
        ids, texts = zip(*read_corpus(root), strict=True)
        encoders.save_precomputed(
            vec / "documents.zarr",
            list(ids),
            enc.encode_documents(list(texts)),
            list(texts),
            identity=enc.identity,
        )
        qs = [json.loads(x) for x in (root / "queries.jsonl").read_text().splitlines()]
        encoders.save_precomputed(
            vec / "queries.zarr",
            [q["_id"] for q in qs],
            enc.encode_queries([q["text"] for q in qs]),
            [q["text"] for q in qs],
            identity=enc.identity,
        )
    return vec


def test_cli_eval_and_sweep(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base, root, enc = setup
    vec = _precomputed(base, root, enc)
    runner = CliRunner()
    out = tmp_path / "cli"
    res = runner.invoke(
        app,
        [
            "eval",
            str(base / "index"),
            "--dataset",
            str(root),
            "-o",
            str(out),
            "--encoder",
            str(vec),
            "--candidates",
            "10,50",
            "--no-progress",
            "--no-plots",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "| exhaustive MaxSim |" in res.output and (out / "report.json").is_file()

    work = tmp_path / "sweep"
    res = runner.invoke(
        app,
        [
            "eval",
            str(work),
            "--dataset",
            str(root),
            "--vectors",
            str(vec),
            "--sweep",
            "fde=r2k2d4,r4k2d4,pool=1,2",
            "--candidates",
            "10,50",
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads((work / "sweep.json").read_text())
    assert [(r["fde"], r["pool_factor"]) for r in summary["rows"]] == [
        ("r2k2d4", 1),
        ("r4k2d4", 1),
        ("r2k2d4", 2),
        ("r4k2d4", 2),
    ]
    assert [r["fde_dim"] for r in summary["rows"]] == [32, 64, 32, 64]
    # pooled tables share nothing with unpooled ones; equal pooling shares the exhaustive run
    assert len(list((work / "cache").glob("exhaustive-*.npz"))) == 2
    assert not (work / "indexes" / "pool1-r2k2d4-exact").exists()  # removed after evaluation
    assert (work / "plots" / "sweep_recall.png").read_bytes()[:4] == b"\x89PNG"

    bad = tmp_path / "bad"
    _make_dataset(bad)
    with open(bad / "corpus.jsonl", "a", encoding="utf-8") as f:
        f.write("{not json\n")
    res = runner.invoke(
        app,
        [
            "eval",
            str(base / "index"),
            "--dataset",
            str(bad),
            "--encoder",
            str(vec),
            "--no-progress",
        ],
    )
    assert res.exit_code == 1
    assert f"{bad / 'corpus.jsonl'}:{N_DOCS + 1}: expected a JSON object" in res.output


def test_sweep_spec_parsing() -> None:
    axes = parse_sweep("fde=2560,5120,r20k5d16f4096,pool=1,2,stage=exact,hnsw")
    assert axes == {
        "fde": ["2560", "5120", "r20k5d16f4096"],
        "pool": ["1", "2"],
        "stage": ["exact", "hnsw"],
    }
    assert parse_fde_spec("10240", 384).output_dim == 10240
    cfg = parse_fde_spec("r10k4d8f1000", 384)
    assert (
        cfg.num_repetitions,
        cfg.num_simhash_projections,
        cfg.projection_dim,
        cfg.final_projection_dim,
        cfg.output_dim,
    ) == (10, 4, 8, 1000, 1000)
    from mvr.errors import ConfigError

    for bad in ("fde=100", "fde=r5x", "size=3", "1,2", "pool=1,pool=2"):
        with pytest.raises(ConfigError):
            axes = parse_sweep(bad)
            parse_fde_spec(axes["fde"][0], 384)


def test_other_first_stage_backends_built_aside(setup) -> None:  # type: ignore[no-untyped-def]
    base, root, enc = setup
    before = sorted(p.name for p in (base / "index").rglob("*"))
    report = evaluate(
        base / "index",
        root,
        encoder=enc,
        candidates=(10, 50),
        ks=(10,),
        backends=("exact", "hnsw"),
        progress=False,
    )
    assert sorted(p.name for p in (base / "index").rglob("*")) == before  # index untouched
    assert list(report["candidate_recall"]) == ["exact", "hnsw"]
    exact, hnsw = (report["candidate_recall"][b]["recall"]["10"] for b in ("exact", "hnsw"))
    # HNSW with ef_search >= N over 200 points is (nearly) exact MIPS on the same FDEs
    np.testing.assert_allclose(hnsw, exact, atol=0.02)
    assert set(report["candidate_recall"]["hnsw"]["judged"]) >= {"ndcg@10", "recall@100"}


def test_cli_eval_hybrid_equals_the_python_api(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """``mvr eval --hybrid``: BM25, mvr and two fusions reported; the fused (and mvr) runs'
    metrics equal those of ``Searcher.search(hybrid=...)`` scored with ``judged_metrics``."""
    from indexing.corpus import load_beir

    base, root, enc = setup
    vec = _precomputed(base, root, enc)
    out = tmp_path / "hybrid"
    res = CliRunner().invoke(app, ["eval", str(base / "index"), "--dataset", str(root), "-o",
                                   str(out), "--encoder", str(vec), "--hybrid",
                                   "--fusions", "rrf,weighted:0.3", "--no-progress"])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "hybrid.json").read_text())
    runs = report["runs"]
    assert list(runs) == ["bm25 (bm25s)", "mvr", "fused rrf", "fused weighted w=0.3"]
    assert report["queries"] == N_QUERIES and report["depth"] == 100
    for name, r in runs.items():  # the printed table shows the written numbers
        assert f"| {name} | {r['ndcg@10']:.4f} | {r['recall@100']:.4f} |" in res.output

    ds = load_beir(root, "test")
    qids = list(ds.queries)
    texts = [ds.queries[q] for q in qids]
    metrics = ("ndcg@10", "recall@100")
    with Searcher.open(base / "index", encoder=encoders.load(vec)) as s:
        mvr_ids = s.search(texts, k=100).ids
        expect = {"mvr": mvr_ids}
        for name, hyb in (("fused rrf", {"fusion": "rrf"}),
                          ("fused weighted w=0.3", {"fusion": "weighted", "weight": 0.3})):
            expect[name] = s.search(texts, k=100, hybrid={"depth": 100, **hyb}).ids
    assert expect["fused rrf"] != mvr_ids  # the fusion changes some rankings
    for name, ranked in expect.items():
        want = judged_metrics(ds.qrels, qids, ranked, metrics)
        assert {m: runs[name][m] for m in metrics} == pytest.approx(want, abs=1e-12), name
