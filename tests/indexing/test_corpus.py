"""Corpus and BEIR dataset loaders, stdlib documentation corpus."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from indexing import BeirDataset, load_beir, read_corpus, stdlib_docs_corpus
from indexing.corpus import split_passages
from mvr.errors import ConfigError, DatasetError, MVRError

SCIFACT = Path("/work/shared/data/scifact")
CRANFIELD = Path("/work/shared/data/cranfield")


def _write_jsonl(path: Path, rows: list[dict], *, gz: bool = False) -> Path:
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _beir(tmp_path: Path, *, qrels: str | None = None, queries: list[dict] | None = None) -> Path:
    root = tmp_path / "ds"
    (root / "qrels").mkdir(parents=True)
    _write_jsonl(
        root / "corpus.jsonl",
        [
            {"_id": "d1", "title": "Alpha", "text": "first doc"},
            {"_id": "d2", "title": "", "text": "second doc"},
            {"_id": "d3", "title": "Gamma", "text": "third"},
        ],
    )
    _write_jsonl(
        root / "queries.jsonl",
        queries
        or [
            {"_id": "q1", "text": "what is alpha"},
            {"_id": "q2", "text": "unjudged query"},
            {"_id": "q3", "text": "gamma?"},
        ],
    )
    (root / "qrels" / "test.tsv").write_text(
        qrels
        if qrels is not None
        else "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t2\nq3\td3\t1\n"
    )
    return root


# ---------------------------------------------------------------------- read_corpus
@pytest.mark.parametrize("gz", [False, True])
def test_beir_jsonl_title_joined(tmp_path: Path, gz: bool) -> None:
    path = _write_jsonl(
        tmp_path / ("corpus.jsonl.gz" if gz else "corpus.jsonl"),
        [
            {"_id": "a", "title": "Title A", "text": "body a"},
            {"_id": "b", "title": "", "text": "body b"},
            {"_id": "c", "title": "Only title", "text": ""},
            {"_id": "d", "text": "no title key"},
        ],
        gz=gz,
    )
    assert list(read_corpus(path)) == [
        ("a", "Title A body a"),
        ("b", "body b"),
        ("c", "Only title"),
        ("d", "no title key"),
    ]


def test_jsonl_with_id_key_and_int_ids_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text('{"id": 7, "text": "seven"}\n\n{"id": "x", "text": "ex", "title": null}\n')
    assert list(read_corpus(path)) == [("7", "seven"), ("x", "ex")]


def test_tsv_with_and_without_header(tmp_path: Path) -> None:
    plain = tmp_path / "c.tsv"
    plain.write_text("1\thello world\n2\ttab\tinside\n")
    assert list(read_corpus(plain)) == [("1", "hello world"), ("2", "tab\tinside")]
    header = tmp_path / "h.tsv"
    header.write_text("id\ttext\ttitle\n1\tbody\tHead\n2\tbody two\t\n")
    assert list(read_corpus(header)) == [("1", "Head body"), ("2", "body two")]


def test_directory_resolves_corpus_file(tmp_path: Path) -> None:
    root = _beir(tmp_path)
    assert [i for i, _ in read_corpus(root)] == ["d1", "d2", "d3"]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (
            '{"_id": "a", "text": "ok"}\n{"_id": "b", "text": \n',
            ":2: expected a JSON object, got invalid JSON",
        ),
        ('{"_id": "a", "text": "ok"}\n[1, 2]\n', ":2: expected a JSON object, got list"),
        (
            '{"_id": "a", "text": "ok"}\n\n{"text": "no id"}\n',
            ":3: expected an '_id' or 'id' field",
        ),
        ('{"_id": "a", "text": 5}\n', ":1: expected a string 'text' field, got 5"),
        ('{"_id": "a", "text": "x", "title": 3}\n', ":1: expected 'title' to be a string or null"),
        (
            '{"_id": "a", "text": "x"}\n{"_id": "a", "text": "y"}\n',
            ":2: duplicate id 'a' (first seen on line 1)",
        ),
    ],
)
def test_malformed_jsonl_names_file_and_line(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(DatasetError) as info:
        list(read_corpus(path))
    assert str(path) + fragment in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, MVRError)


def test_malformed_tsv_and_bad_encoding(tmp_path: Path) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text("1\tfine\n2 no tab here\n")
    with pytest.raises(DatasetError, match=r"bad\.tsv:2: expected 'id<TAB>text'"):
        list(read_corpus(path))
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"_id": "a", "text": "ok"}\n{"_id": "b", "text": "caf\xe9"}\n')
    with pytest.raises(DatasetError, match=r"latin\.jsonl:2: expected UTF-8"):
        list(read_corpus(latin))


def test_truncated_gzip(tmp_path: Path) -> None:
    rows = [{"_id": str(i), "text": "word " * 50} for i in range(200)]
    full = _write_jsonl(tmp_path / "full.jsonl.gz", rows, gz=True).read_bytes()
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(full[: len(full) // 2])
    with pytest.raises(DatasetError, match=r"cut\.jsonl\.gz:\d+: could not read the file"):
        list(read_corpus(cut))


def test_missing_file_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        list(read_corpus(tmp_path / "nope.jsonl"))
    other = tmp_path / "corpus.csv"
    other.write_text("a,b\n")
    with pytest.raises(DatasetError, match=r"unknown corpus format"):
        list(read_corpus(other))
    with pytest.raises(DatasetError, match="expected one of"):
        list(read_corpus(tmp_path))


# ---------------------------------------------------------------------- load_beir
def test_load_beir_keeps_only_judged_queries(tmp_path: Path) -> None:
    ds = load_beir(_beir(tmp_path), check_corpus=True)
    assert isinstance(ds, BeirDataset)
    assert ds.queries == {"q1": "what is alpha", "q3": "gamma?"}
    assert ds.qrels == {"q1": {"d1": 1, "d2": 2}, "q3": {"d3": 1}}
    assert list(ds.corpus())[0] == ("d1", "Alpha first doc")
    with pytest.raises(AttributeError):
        ds.split = "dev"  # type: ignore[misc]


def test_qrels_unknown_query_names_file_and_line(tmp_path: Path) -> None:
    root = _beir(tmp_path, qrels="query-id\tcorpus-id\tscore\nq1\td1\t1\nq9\td2\t1\n")
    with pytest.raises(DatasetError) as info:
        load_beir(root)
    msg = str(info.value)
    assert f"{root / 'qrels' / 'test.tsv'}:3: query id 'q9' is not in" in msg
    assert "queries.jsonl" in msg


def test_qrels_unknown_doc_names_file_and_line(tmp_path: Path) -> None:
    root = _beir(tmp_path, qrels="query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\tzz\t1\nq3\td3\t1\n")
    ds = load_beir(root)  # the corpus is not read by default
    with pytest.raises(DatasetError, match=r"test\.tsv:3: query 'q1' judges document 'zz'"):
        ds.check_doc_ids(["d1", "d2", "d3"])
    with pytest.raises(DatasetError, match=r"test\.tsv:3: .*1 judged document id\(s\) unknown"):
        load_beir(root, check_corpus=True)


@pytest.mark.parametrize(
    ("qrels", "fragment"),
    [
        (
            "query-id\tcorpus-id\tscore\nq1\td1\n",
            ":2: expected 'query-id<TAB>corpus-id<TAB>score', got 2",
        ),
        (
            "query-id\tcorpus-id\tscore\nq1\td1\thigh\n",
            ":2: expected an integer relevance score, got 'high'",
        ),
        (
            "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td1\t2\n",
            ":3: query 'q1' judges document 'd1' 2, but line 2",
        ),
        ("query-id\tcorpus-id\tscore\n", "expected at least one judgment"),
    ],
)
def test_malformed_qrels(tmp_path: Path, qrels: str, fragment: str) -> None:
    root = _beir(tmp_path, qrels=qrels)
    with pytest.raises(DatasetError) as info:
        load_beir(root)
    assert fragment in str(info.value)


def test_trec_qrels_and_missing_split(tmp_path: Path) -> None:
    root = _beir(tmp_path, qrels="q1 0 d1 1\nq3 0 d3 2\n")
    assert load_beir(root).qrels == {"q1": {"d1": 1}, "q3": {"d3": 2}}
    with pytest.raises(
        DatasetError, match=r"no qrels for split 'dev'; available splits: \['test'\]"
    ):
        load_beir(root, split="dev")
    with pytest.raises(DatasetError, match="expected a BEIR dataset directory"):
        load_beir(tmp_path / "missing")


def test_duplicate_query_id(tmp_path: Path) -> None:
    root = _beir(
        tmp_path,
        queries=[
            {"_id": "q1", "text": "a"},
            {"_id": "q3", "text": "b"},
            {"_id": "q1", "text": "c"},
        ],
    )
    with pytest.raises(DatasetError, match=r"queries\.jsonl:3: duplicate query id 'q1'"):
        load_beir(root)


@pytest.mark.skipif(not SCIFACT.is_dir(), reason="shared SciFact copy not present")
def test_real_scifact_counts() -> None:
    ds = load_beir(SCIFACT)
    assert len(ds.queries) == 300
    assert sum(len(v) for v in ds.qrels.values()) == 339
    first = next(ds.corpus())
    assert first[0] == "4983" and first[1].startswith(
        "Microstructural development of human newborn"
    )


@pytest.mark.skipif(not CRANFIELD.is_dir(), reason="shared Cranfield copy not present")
def test_real_cranfield_counts() -> None:
    ds = load_beir(CRANFIELD, check_corpus=True)
    assert len(ds.queries) == 225
    assert sum(len(v) for v in ds.qrels.values()) == 1612
    assert sum(1 for _ in ds.corpus()) == 1400


# ---------------------------------------------------------------------- stdlib docs
def test_split_passages_sizes() -> None:
    paras = [" ".join(f"w{p}_{i}" for i in range(60)) for p in range(10)]  # 10 x 60 words
    passages = split_passages("\n\n".join(paras))
    words = [len(p.split()) for p in passages]
    assert sum(words) == 600  # nothing lost or duplicated
    assert all(150 <= w <= 250 for w in words), words
    long_block = "\n".join(
        " ".join(f"x{j}_{i}" for i in range(20)) for j in range(40)
    )  # one 800-word block
    words = [len(p.split()) for p in split_passages(long_block)]
    assert sum(words) == 800 and max(words) <= 250


def test_stdlib_docs_corpus() -> None:
    docs = stdlib_docs_corpus()
    ids = [i for i, _ in docs]
    assert len(ids) == len(set(ids)) > 1000
    texts = dict(docs)
    assert "topic:assert#0" in texts and "assert" in texts["topic:assert#0"]
    assert any(i.startswith("doc:json.loads") for i in ids)
    json_loads = next(t for i, t in docs if i.startswith("doc:json.loads"))
    assert json_loads.startswith("json.loads(") and "Deserialize" in json_loads
    assert not any(
        i.startswith(("doc:antigravity", "doc:this", "doc:tkinter", "doc:turtle")) for i in ids
    )
    assert all(t.strip() for t in texts.values())
    topic_words = [len(t.split()) for i, t in docs if i.startswith("topic:")]
    assert max(topic_words) <= 300
    assert stdlib_docs_corpus(max_passages=25) == docs[:25]  # deterministic, capped
    with pytest.raises(ConfigError):
        stdlib_docs_corpus(max_passages=-1)
