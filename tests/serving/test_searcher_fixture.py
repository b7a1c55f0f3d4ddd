"""The committed format-version-1 fixture index keeps opening and answering correctly."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).parents[1] / "fixtures"
sys.path.insert(0, str(FIXTURES))
from index_testlib import assert_topk_matches, brute_maxsim  # noqa: E402
from make_fixture import DELETED, fixture_documents, fixture_queries  # noqa: E402

from mvr import MultiVectors  # noqa: E402
from serving import Searcher  # noqa: E402


def test_index_v1_opens_and_matches_brute_force() -> None:
    live = [(i, t, v) for i, t, v in fixture_documents() if i not in DELETED]
    ids = [i for i, _, _ in live]
    q = MultiVectors.from_arrays(fixture_queries())
    ref = brute_maxsim(q, [v.astype(np.float16) for _, _, v in live])
    with Searcher.open(FIXTURES / "index_v1", mode="mmap") as s:
        assert s.manifest["format_version"] == 1
        assert s.num_documents == 38 and len(s.manifest["segments"]) == 2
        for res in (s.exhaustive(q, k=5), s.search(q, k=5, candidates=38)):
            for qi in range(len(q)):
                assert_topk_matches(res.ids[qi], res.scores[qi], ref[qi], ids, 5)
        first = s.search(q, k=38, candidates=38, rerank=False)
        assert all(sorted(r) == sorted(ids) for r in first.ids)  # tombstones honoured
        assert s.get_texts(["v1-doc-0", "v1-doc-39"]) == [
            "fixture document number 0", "fixture document number 39"]


def test_index_v2_opens_and_matches_brute_force_over_its_codes() -> None:
    """Format 2 (res4 table, codec, centroid ids, faiss Flat first stages): the
    exhaustive answer is exact MaxSim over the decoded vectors, which stay close to the
    raw ones, and a search with every document a candidate returns it."""
    live = [(i, t, v) for i, t, v in fixture_documents() if i not in DELETED]
    ids = [i for i, _, _ in live]
    q = MultiVectors.from_arrays(fixture_queries())
    with Searcher.open(FIXTURES / "index_v2", mode="mmap", verify=True) as s:
        assert s.manifest["format_version"] == 2 and s.manifest["codec"] is not None
        assert s.num_documents == 38 and len(s.manifest["segments"]) == 2
        assert s.stats()["first_stage"] == ["flat", "flat"]
        rows = np.array([s.ids.index(i) for i in ids])
        decoded = s.store.get(rows)
        for (_, _, v), d in zip(live, decoded, strict=True):
            assert ((v * d).sum(1) / np.linalg.norm(d, axis=1)).min() > 0.9
        ref = brute_maxsim(q, list(decoded))
        for res in (s.exhaustive(q, k=5), s.search(q, k=5, candidates=38, rerank_candidates=38)):
            for qi in range(len(q)):
                assert_topk_matches(res.ids[qi], res.scores[qi], ref[qi], ids, 5)
        assert s.get_texts(["v1-doc-0"]) == ["fixture document number 0"]
