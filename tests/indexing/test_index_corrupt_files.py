"""Malformed small files of an index (ids.jsonl, .build/progress.json, tombstones) are
refused with CorruptIndexError naming the file (and the line or segment), never a bare
JSONDecodeError or KeyError."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "fixtures"))
from index_testlib import clustered_docs, small_config  # noqa: E402

from indexing import IndexWriter, build_index  # noqa: E402
from mvr._manifest import file_entry, read_manifest, write_manifest  # noqa: E402
from mvr.errors import CorruptIndexError  # noqa: E402
from serving import Searcher  # noqa: E402


@pytest.fixture
def index(tmp_path: Path) -> Path:
    build_index(tmp_path / "idx", clustered_docs(20, seed=1), None, small_config(),
                progress=False)
    return tmp_path / "idx"


def test_malformed_ids_line_names_file_and_line(index: Path) -> None:
    f = index / "segments" / "seg-000001" / "ids.jsonl"
    lines = f.read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace('"', "x", 1)  # same size: only the content is wrong
    f.write_text("".join(lines))
    with pytest.raises(CorruptIndexError, match=r"ids\.jsonl.*line 3"):
        IndexWriter(index).delete(["doc-1"])
    with pytest.raises(CorruptIndexError, match=r"ids\.jsonl"):
        Searcher.open(index, verify=False)


def test_non_string_id_is_corrupt(index: Path) -> None:
    f = index / "segments" / "seg-000001" / "ids.jsonl"
    lines = f.read_text().splitlines(keepends=True)
    lines[0] = "1234567\n"  # '"doc-0"' has 7 characters too
    f.write_text("".join(lines))
    with pytest.raises(CorruptIndexError, match=r"ids\.jsonl.*line 1.*expected a JSON string"):
        IndexWriter(index).delete(["doc-1"])


def test_malformed_progress_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / ".build").mkdir()
    (tmp_path / ".build" / "progress.json").write_text('{\n "kind": "build",\n oops\n')
    with pytest.raises(CorruptIndexError, match=r"progress\.json.*line 3"):
        build_index(tmp_path, clustered_docs(5), None, small_config(), resume=True,
                    progress=False)


def _write_tombstones(index: Path, content: dict) -> None:
    m = read_manifest(index)
    name = "tombstones-000009.json"
    (index / name).write_text(json.dumps(content))
    m["tombstones"] = name
    m["files"][name] = file_entry(index, name)
    write_manifest(index, m)


def test_tombstones_of_an_unknown_segment_name_file_and_segment(index: Path) -> None:
    _write_tombstones(index, {"seg-000001": [0], "seg-000777": [1]})
    with pytest.raises(CorruptIndexError, match=r"tombstones-000009\.json.*'seg-000777'"):
        Searcher.open(index)
    with pytest.raises(CorruptIndexError, match=r"tombstones-000009\.json.*'seg-000777'"):
        IndexWriter(index).delete(["doc-1"])


def test_tombstone_rows_out_of_range_or_malformed(index: Path) -> None:
    _write_tombstones(index, {"seg-000001": [0, 20]})
    with pytest.raises(CorruptIndexError, match=r"tombstones-000009\.json.*row 20.*0 <= row < 20"):
        Searcher.open(index)
    _write_tombstones(index, {"seg-000001": "0"})
    with pytest.raises(CorruptIndexError, match=r"tombstones-000009\.json.*list of rows"):
        Searcher.open(index)
