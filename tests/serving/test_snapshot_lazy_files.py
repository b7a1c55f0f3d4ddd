"""A searcher keeps serving its snapshot's metadata and BM25 when it first uses them
only after a compaction has unlinked the files of that snapshot.

Metadata (filters, ``mvr info``) and BM25 (hybrid search) are loaded when first used,
not at :meth:`serving.Searcher.open`. The open holds them instead (descriptors), so a
writer that compacts between the open and the first filtered or hybrid search cannot
take them away. The writer runs in this process: ``Searcher.open``, then delete +
compact (every file of the opened snapshot is unlinked, checked), then the first
filtered and hybrid searches. Oracles: brute-force MaxSim over the raw vectors for the
filtered search, and a copy of the index taken before the compaction (the same
snapshot, its files intact) for BM25, hybrid and the metadata summary.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from index_testlib import HashEncoder, assert_topk_matches, brute_maxsim, small_config  # noqa: E402

from indexing import IndexWriter, build_index  # noqa: E402
from serving import Searcher  # noqa: E402
from serving._bm25 import index_bm25  # noqa: E402
from serving._metadata import metadata_summary  # noqa: E402

WORDS = ["cell", "protein", "bone", "vitamin", "gene", "virus", "cancer", "fracture",
         "the", "of", "running", "runs"]
N_BASE, N_ADD = 60, 20
DELETED_BEFORE = ["doc-1", "doc-2", "doc-65"]  # tombstones of the opened snapshot
DELETED_AFTER = ["doc-3", "doc-70"]  # deleted by the compacting writer
QUERIES = ["cell protein gene", "bone fracture vitamin", "virus of the cancer"]
FILTER = {"field": "odd", "eq": True}


def _docs(lo: int, hi: int) -> list[dict[str, object]]:
    rng = np.random.default_rng(3)
    texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 9))))
             for _ in range(N_BASE + N_ADD)]
    return [{"id": f"doc-{i}", "text": texts[i], "metadata": {"odd": bool(i % 2), "n": i}}
            for i in range(lo, hi)]


@pytest.fixture
def snapshot(tmp_path: Path):
    """An index of two segments with tombstones, a searcher opened on it, a copy of it
    taken at that moment, and then a compaction that retires every segment."""
    idx, enc = tmp_path / "idx", HashEncoder()
    build_index(idx, _docs(0, N_BASE), enc, small_config(), progress=False)
    with IndexWriter(idx, encoder=enc) as w:
        w.add(_docs(N_BASE, N_BASE + N_ADD))
        w.delete(DELETED_BEFORE)
    s = Searcher.open(idx, encoder=enc)
    shutil.copytree(idx, tmp_path / "copy")
    ref = Searcher.open(tmp_path / "copy", encoder=enc)
    opened = {p.relative_to(idx) for p in (idx / "segments").rglob("*") if p.is_file()}
    with IndexWriter(idx, encoder=enc) as w:
        w.delete(DELETED_AFTER)
        w.compact()
    left = {p.relative_to(idx) for p in (idx / "segments").rglob("*") if p.is_file()}
    assert opened and not opened & left, f"the compaction left files of the snapshot: {opened & left}"
    yield s, ref, enc
    s.close()
    ref.close()


def test_filtered_search_after_compaction_equals_brute_force(snapshot):
    s, _, enc = snapshot
    res = s.search(QUERIES, k=8, candidates=80, filter=FILTER)
    keep = [d for d in _docs(0, N_BASE + N_ADD)
            if d["metadata"]["odd"] and d["id"] not in DELETED_BEFORE]  # DELETED_AFTER: live here
    assert {"doc-3", "doc-65"} & {d["id"] for d in keep} == {"doc-3"}
    vecs = [enc.encode_documents([d["text"]])[0].astype(np.float16).astype(np.float32)
            for d in keep]
    brute = brute_maxsim(enc.encode_queries(QUERIES), vecs)
    for i in range(len(QUERIES)):
        assert_topk_matches(res.ids[i], res.scores[i], brute[i], [d["id"] for d in keep], k=8)


def test_hybrid_search_and_bm25_after_compaction_equal_the_intact_snapshot(snapshot):
    s, ref, _ = snapshot
    for q in QUERIES:
        np.testing.assert_array_equal(index_bm25(s).scores(q), index_bm25(ref).scores(q))
    got = s.search(QUERIES, k=10, candidates=80, hybrid=True, filter=FILTER)
    want = ref.search(QUERIES, k=10, candidates=80, hybrid=True, filter=FILTER)
    assert got.ids == want.ids
    for a, b in zip(got.scores, want.scores, strict=True):
        np.testing.assert_array_equal(a, b)


def test_metadata_summary_after_compaction_equals_the_intact_snapshot(snapshot):
    s, ref, _ = snapshot
    got = metadata_summary(s)
    assert got == metadata_summary(ref)
    assert got["documents"] == N_BASE + N_ADD - len(DELETED_BEFORE)


def test_held_descriptors_are_released_once_loaded_and_at_close(snapshot):
    s, _, _ = snapshot
    held = s._held
    n_meta = sum(1 for rel in s.manifest["files"] if rel.endswith("/metadata.arrow"))
    n_bm25 = sum(1 for rel in s.manifest["files"] if "/bm25/" in rel)
    assert (n_meta, len(held)) == (2, n_meta + n_bm25), (n_meta, n_bm25, len(held))
    metadata_summary(s)
    assert len(held) == n_bm25, f"expected {n_bm25} descriptors after metadata, got {len(held)}"
    index_bm25(s)
    assert len(held) == 0, f"expected none after BM25, got {len(held)}"
    s2 = Searcher.open(s.path)  # the compacted index: one segment
    held2 = s2._held
    lazy = [rel for rel in s2.manifest["files"] if rel.endswith("/metadata.arrow") or "/bm25/" in rel]
    assert len(held2) == len(lazy) == (n_meta + n_bm25) // 2
    s2.close()
    assert len(held2) == 0
