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
