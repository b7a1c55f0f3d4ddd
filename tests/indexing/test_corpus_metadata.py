"""``read_corpus(..., metadata=True)``: the metadata column of JSONL / BEIR corpora, and
metadata given at build time landing in ``metadata.arrow``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from index_testlib import clustered_docs, small_config  # noqa: E402

from indexing import build_index, read_corpus  # noqa: E402
from indexing._metadata import METADATA_FILE, normalise_metadata, read_metadata_rows  # noqa: E402
from mvr.errors import DatasetError, InvalidInputError  # noqa: E402


def test_metadata_column(tmp_path):
    p = tmp_path / "corpus.jsonl"
    rows = [{"_id": "a", "title": "T", "text": "x", "metadata": {"year": 2001, "tags": ["p"]}},
            {"_id": "b", "text": "y"}, {"_id": "c", "text": "z", "metadata": None}]
    p.write_text("\n".join(json.dumps(r) for r in rows))
    assert list(read_corpus(p)) == [("a", "T x"), ("b", "y"), ("c", "z")]
    assert list(read_corpus(p, metadata=True)) == [
        ("a", "T x", {"year": 2001, "tags": ["p"]}), ("b", "y", None), ("c", "z", None)]


def test_metadata_must_be_an_object(tmp_path):
    p = tmp_path / "corpus.jsonl"
    p.write_text(json.dumps({"_id": "a", "text": "x", "metadata": [1]}) + "\n")
    with pytest.raises(DatasetError, match=r"corpus.jsonl:1: expected 'metadata' to be a JSON object or null, got list"):
        list(read_corpus(p, metadata=True))


@pytest.mark.parametrize("meta, message", [
    ([1], "document 'd': metadata: expected a JSON object (dict), got list"),
    ({"": 1}, "document 'd': metadata: expected non-empty string field names, got ''"),
    ({"t": ["a", 2]}, "document 'd': metadata field 't'[1]: expected a list of strings, got int 2"),
    ({"x": float("nan")}, "document 'd': metadata field 'x': expected a finite number, got nan"),
    ({"x": 2**70}, "document 'd': metadata field 'x': expected an int within int64"),
])
def test_bad_metadata(meta, message):
    with pytest.raises(InvalidInputError) as e:
        normalise_metadata("d", meta)
    assert message in str(e.value)


def test_none_fields_are_absent():
    assert normalise_metadata("d", {"a": None}) is None
    assert normalise_metadata("d", {"a": None, "b": ("x",)}) == {"b": ["x"]}


def test_build_writes_metadata_columns(tmp_path):
    docs = clustered_docs(5, seed=0)
    metas = [{"year": 2000 + i, "lang": "en" if i % 2 else "fr", "tags": ["a"] * i,
              "ok": i > 2, "w": 0.5 * i} if i != 3 else None for i in range(5)]
    build_index(tmp_path / "i", [(d, "text", v) for d, v in docs], None, small_config(), progress=False)
    assert not list((tmp_path / "i").rglob(METADATA_FILE))  # no metadata, no file
    items = [{"id": d, "vectors": v, "metadata": m} for (d, v), m in zip(docs, metas, strict=True)]
    build_index(tmp_path / "j", items, None, small_config(), progress=False)
    seg = tmp_path / "j" / "segments" / "seg-000001"
    manifest = json.loads((tmp_path / "j" / "manifest.json").read_text())
    assert f"segments/seg-000001/{METADATA_FILE}" in manifest["files"]
    assert read_metadata_rows(seg, range(5)) == [None if m is None else {k: v for k, v in m.items()} for m in metas]


class _Boom(RuntimeError):
    pass


@pytest.mark.parametrize("owner, name, n", [
    ("indexing._build", "_encode_batch", 3),       # batch 3's metadata staged, its vectors not
    ("indexing._segment.SegmentWriter", "commit", 4),
    ("indexing._extras", "write_metadata_file", 1),
    ("indexing._extras", "build_bm25", 1),
])
def test_resume_keeps_metadata_aligned(tmp_path, monkeypatch, owner, name, n):
    import importlib

    mod_name, _, cls = owner.partition(".SegmentWriter")
    target = importlib.import_module(mod_name)
    if cls or owner.endswith("SegmentWriter"):
        target = target.SegmentWriter
    docs = clustered_docs(230, seed=4)
    items = [{"id": d, "text": f"text {i}", "vectors": v, "metadata": {"i": i, "odd": bool(i % 2)}}
             for i, (d, v) in enumerate(docs)]
    cfg = small_config(batch_size=50)
    orig, calls = getattr(target, name), {"n": 0}

    def wrapped(*a, **kw):
        calls["n"] += 1
        if calls["n"] == n:
            raise _Boom(name)
        return orig(*a, **kw)

    with monkeypatch.context() as mp:
        mp.setattr(target, name, wrapped)
        with pytest.raises(_Boom):
            build_index(tmp_path / "i", items, None, cfg, progress=False)
    build_index(tmp_path / "i", items, None, cfg, resume=True, progress=False)
    seg = tmp_path / "i" / "segments" / "seg-000001"
    assert read_metadata_rows(seg, range(230)) == [it["metadata"] for it in items]
    assert (seg / "bm25" / "mvr_bm25.json").is_file()
