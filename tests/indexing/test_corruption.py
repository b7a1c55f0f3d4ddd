"""Damaged index files: refused with an MVRError naming the file, or the same answers as
the intact index; never a crash, never a different answer. A seeded subset of the trials
of ``scripts/corrupt_campaign.py`` in both regimes (``large``: every file treated as too
big to hash at open), and the checks that make the ``large`` regime hold: per-record
checksums of tables and texts verified as they are read, files read whole hashed at open
whatever their size, the manifest's own checksum.

The seeded subset is one trial per kind of file (``cl.cover``: 15 kinds, every mutation
twice or three times); ``scripts/corrupt_campaign.py`` runs the full round robin."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "fixtures"))
import corrupt_lib as cl  # noqa: E402
from index_testlib import HashEncoder  # noqa: E402

from mvr.errors import ChecksumMismatchError  # noqa: E402
from serving import Searcher  # noqa: E402


@pytest.fixture(scope="module")
def intact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cl.build(tmp_path_factory.mktemp("corrupt") / "intact")


@pytest.mark.parametrize("regime", cl.REGIMES)
def test_seeded_corruptions_are_refused_or_harmless(intact: Path, tmp_path: Path,
                                                    regime: str) -> None:
    files = cl.index_files(intact)
    plan = cl.cover(files, seed=11)
    assert {cl.file_kind(rel) for rel, _ in plan} == {cl.file_kind(f) for f in files}
    assert {m for _, m in plan} == set(cl.MUTATIONS)
    with cl.regime(regime):
        ref = cl.reference(intact)
        trials = [cl.run_trial(intact, tmp_path / "w", ref, rel, m,
                               np.random.default_rng([7, n]))
                  for n, (rel, m) in enumerate(plan)]
    failed = [t for t in trials if t.outcome == "FAILED"]
    assert not failed, failed
    assert sum(t.outcome == "refused" for t in trials) >= len(trials) // 2


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def _copy(intact: Path, tmp_path: Path) -> Path:
    import shutil

    shutil.copytree(intact, tmp_path / "idx")
    return tmp_path / "idx"


@pytest.mark.parametrize("mode", cl.MODES)
def test_flipped_table_bit_is_caught_when_its_record_is_read(intact: Path, tmp_path: Path,
                                                             mode: str) -> None:
    idx = _copy(intact, tmp_path)
    _flip(idx / "segments" / "seg-000001" / "tokens.bin", 0)  # doc-0's record
    with Searcher.open(idx, mode=mode, encoder=HashEncoder(), verify=False) as s:
        with pytest.raises(ChecksumMismatchError,
                           match=r"seg-000001/tokens\.bin.*record of document row 0"):
            s.rerank(["w1"], [["doc-0", "doc-1"]])
        assert s.rerank(["w1"], [["doc-1"]]).ids == [["doc-1"]]  # the others still answer


def test_flipped_text_bit_is_caught(intact: Path, tmp_path: Path) -> None:
    idx = _copy(intact, tmp_path)
    _flip(idx / "segments" / "seg-000002" / "texts.bin", 1)
    with Searcher.open(idx, encoder=HashEncoder(), verify=False) as s:
        with pytest.raises(ChecksumMismatchError, match=r"seg-000002/texts\.bin"):
            s.get_texts(["doc-120"])
        with Searcher.open(intact) as ok:
            assert s.get_texts(["doc-0"]) == ok.get_texts(["doc-0"])


def test_files_read_whole_are_hashed_whatever_their_size(intact: Path, tmp_path: Path) -> None:
    idx = _copy(intact, tmp_path)
    _flip(idx / "segments" / "seg-000001" / "first_stage.faiss", 200)
    with cl.regime("large"), pytest.raises(ChecksumMismatchError,
                                           match=r"seg-000001/first_stage\.faiss"):
        Searcher.open(idx)
    Searcher.open(idx, verify=False).close()  # sizes only: as asked


def test_an_altered_manifest_value_is_refused(intact: Path, tmp_path: Path) -> None:
    idx = _copy(intact, tmp_path)
    m = json.loads((idx / "manifest.json").read_text())
    m["config"]["default_candidates"] += 1  # valid JSON, a plausible value
    (idx / "manifest.json").write_text(json.dumps(m, indent=1))
    with pytest.raises(ChecksumMismatchError, match=r"manifest\.json: manifest_sha256 mismatch"):
        Searcher.open(idx)


def test_compaction_refuses_to_copy_a_damaged_record(intact: Path, tmp_path: Path) -> None:
    from indexing import IndexWriter

    idx = _copy(intact, tmp_path)
    _flip(idx / "segments" / "seg-000002" / "tokens.bin", 5)
    before = (idx / "manifest.json").read_bytes()
    with IndexWriter(idx) as w, pytest.raises(ChecksumMismatchError,
                                             match=r"seg-000002/tokens\.bin.*row 0 \(id 'doc-120'\)"):
        w.compact()
    assert (idx / "manifest.json").read_bytes() == before  # nothing committed
