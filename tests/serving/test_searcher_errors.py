"""Refusals on open: missing, incomplete, unknown version, truncated, checksum, encoder."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "fixtures"))
from index_testlib import HashEncoder, small_config  # noqa: E402

from indexing import IndexWriter, build_index  # noqa: E402
from mvr.errors import (  # noqa: E402
    ChecksumMismatchError,
    CorruptIndexError,
    EncoderMismatchError,
    FormatVersionError,
    IncompleteIndexError,
    IndexNotFoundError,
)
from serving import Searcher  # noqa: E402


@pytest.fixture
def index(tmp_path: Path) -> Path:
    texts = [(f"d{i}", f"word{i % 5} other{i % 3} thing{i}") for i in range(30)]
    build_index(tmp_path / "idx", texts, HashEncoder(seed=0), small_config(), progress=False)
    return tmp_path / "idx"


def test_missing_and_incomplete(tmp_path: Path, index: Path) -> None:
    with pytest.raises(IndexNotFoundError, match="does not exist"):
        Searcher.open(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexNotFoundError, match="manifest.json not found"):
        Searcher.open(tmp_path / "empty")
    (index / "manifest.json").unlink()
    with pytest.raises(IncompleteIndexError, match="manifest.json expected, not found"):
        Searcher.open(index)
    with pytest.raises(IncompleteIndexError):
        IndexWriter(index)


def test_wrong_format_version(index: Path) -> None:
    m = json.loads((index / "manifest.json").read_text())
    m["format_version"] = 99
    (index / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(FormatVersionError,
                       match=r"manifest.json: format_version expected one of \[1, 2, 3, 4\].*got 99"):
        Searcher.open(index)


def test_truncated_file(index: Path) -> None:
    f = index / "segments" / "seg-000001" / "tokens.bin"
    size = f.stat().st_size
    with open(f, "r+b") as fh:
        fh.truncate(size - 10)
    with pytest.raises(CorruptIndexError, match=(
            rf"'segments/seg-000001/tokens.bin' is truncated: expected {size} bytes, "
            rf"got {size - 10} bytes")):
        Searcher.open(index, verify=False)


def test_checksum_mismatch(index: Path) -> None:
    f = index / "segments" / "seg-000001" / "ids.jsonl"
    expected = json.loads((index / "manifest.json").read_text())["files"][
        "segments/seg-000001/ids.jsonl"]["sha256"]
    data = bytearray(f.read_bytes())
    data[2] ^= 1  # same size, other content
    f.write_bytes(bytes(data))
    import hashlib

    actual = hashlib.sha256(bytes(data)).hexdigest()
    with pytest.raises(ChecksumMismatchError, match=(
            rf"'segments/seg-000001/ids.jsonl': sha256 mismatch, expected {expected}, "
            rf"got {actual}")):
        Searcher.open(index)
    Searcher.open(index, verify=False).close()  # sizes still agree


def test_other_encoder_identity(index: Path) -> None:
    with pytest.raises(EncoderMismatchError, match=(
            r"expected \{.*'seed': 0.*\}, got \{.*'seed': 1.*\}")):
        Searcher.open(index, encoder=HashEncoder(seed=1))
    with pytest.raises(EncoderMismatchError, match="expected 16 .*got 8"):
        Searcher.open(index, encoder=HashEncoder(dim=8))
    with pytest.raises(EncoderMismatchError):
        IndexWriter(index, encoder=HashEncoder(seed=2))
    with Searcher.open(index, encoder=HashEncoder(seed=0)) as s:
        assert len(s.search(["word1 other2"], k=2).ids[0]) == 2
