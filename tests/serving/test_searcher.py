"""Searcher: results against brute-force MaxSim, stages, texts, determinism, threads."""

from __future__ import annotations

import dataclasses
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "fixtures"))
from index_testlib import (  # noqa: E402
    DIM,
    HashEncoder,
    assert_topk_matches,
    brute_maxsim,
    clustered_docs,
    queries_like,
    small_config,
)

from indexing import build_index  # noqa: E402
from mvr import MultiVectors  # noqa: E402
from mvr._fde import encode_document_fdes, encode_query_fdes  # noqa: E402
from mvr.errors import (  # noqa: E402
    ConfigError,
    DimensionMismatchError,
    DocumentNotFoundError,
    EmptyInputError,
)
from serving import Searcher  # noqa: E402

N_DOCS = 400


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    docs = clustered_docs(N_DOCS, seed=21)
    path = tmp_path_factory.mktemp("searcher")
    cfg = small_config(batch_size=100)
    build_index(path, docs, None, cfg, progress=False)
    q = queries_like(docs, 12, seed=4)
    ref = brute_maxsim(q, [v.astype(np.float16) for _, v in docs])
    return path, docs, cfg, q, ref


@pytest.mark.parametrize("mode", ["memory", "mmap"])
def test_exhaustive_and_full_candidates_equal_brute_force(built, mode) -> None:  # type: ignore[no-untyped-def]
    path, docs, _, q, ref = built
    ids = [i for i, _ in docs]
    with Searcher.open(path, mode=mode) as s:
        for res in (s.exhaustive(q, k=10), s.search(q, k=10, candidates=N_DOCS)):
            assert len(res) == len(q)
            for qi in range(len(q)):
                assert_topk_matches(res.ids[qi], res.scores[qi], ref[qi], ids, 10)


def test_first_stage_is_fde_inner_product(built) -> None:  # type: ignore[no-untyped-def]
    path, docs, cfg, q, _ = built
    ids = [i for i, _ in docs]
    dfde = encode_document_fdes(MultiVectors.from_arrays([v for _, v in docs]), cfg.fde)
    qfde = encode_query_fdes(q, dataclasses.replace(cfg.fde, fill_empty_partitions=False))
    # format 2 keeps the FDEs as float16 (in a faiss Flat index for a small segment)
    ref = qfde.astype(np.float64) @ dfde.astype(np.float16).astype(np.float64).T
    with Searcher.open(path) as s:
        res = s.search(q, k=20, rerank=False)
        for qi in range(len(q)):
            assert_topk_matches(res.ids[qi], res.scores[qi], ref[qi], ids, 20, tol=1e-3)


def test_rerank_is_exact_over_given_ids(built) -> None:  # type: ignore[no-untyped-def]
    path, docs, _, q, ref = built
    ids = [i for i, _ in docs]
    pick = [ids[5:40], ids[100:103], ids[:1]]
    with Searcher.open(path) as s:
        res = s.rerank(q[:3], pick, k=5)
        for qi in range(3):
            cols = [ids.index(d) for d in pick[qi]]
            assert_topk_matches(res.ids[qi], res.scores[qi], ref[qi, cols], pick[qi], 5)
        with pytest.raises(DocumentNotFoundError, match=r"\['nope', 'zzz'\]"):
            s.rerank(q[:2], [["doc-1", "zzz"], ["nope"]])
        with pytest.raises(ConfigError, match="expected one list per query"):
            s.rerank(q[:2], [["doc-1"]])


def test_search_reranks_exactly_the_first_stage_candidates(built) -> None:  # type: ignore[no-untyped-def]
    """search(k, N) == brute-force top-k over the first stage's top-N; recall grows with N."""
    path, docs, _, q, ref = built
    ids = [i for i, _ in docs]
    col = {d: j for j, d in enumerate(ids)}
    with Searcher.open(path) as s:
        exact = s.exhaustive(q, k=10)
        recalls = []
        for n in (10, 50, 200):
            cand = s.search(q, k=n, candidates=n, rerank=False)
            got = s.search(q, k=10, candidates=n)
            for qi in range(len(q)):
                cols = [col[d] for d in cand.ids[qi]]
                assert_topk_matches(got.ids[qi], got.scores[qi], ref[qi, cols], cand.ids[qi],
                                    10)
            recalls.append(np.mean([len(set(a) & set(b)) / 10
                                    for a, b in zip(got.ids, exact.ids, strict=True)]))
    assert recalls == sorted(recalls) and recalls[-1] >= 0.8


def test_deterministic_and_thread_safe(built) -> None:  # type: ignore[no-untyped-def]
    path, _, _, q, _ = built
    with Searcher.open(path, mode="mmap") as s:
        serial = [s.search(q[i : i + 1], k=7, candidates=60) for i in range(len(q))]
        with ThreadPoolExecutor(4) as ex:
            parallel = list(ex.map(lambda i: s.search(q[i : i + 1], k=7, candidates=60),
                                   range(len(q))))
        for a, b in zip(serial, parallel, strict=True):
            assert a.ids == b.ids
            np.testing.assert_array_equal(a.scores[0], b.scores[0])
        batch = s.search(q, k=7, candidates=60)
        assert batch.ids == [r.ids[0] for r in serial]
        stats = s.stats()
        assert stats["counters"]["queries"] == 3 * len(q)
        assert stats["documents"] == N_DOCS and stats["first_stage"] == ["flat"]
        assert set(batch.timings) >= {"query_fde", "first_stage", "fetch", "maxsim", "top_k"}


def test_input_validation(built) -> None:  # type: ignore[no-untyped-def]
    path, _, _, q, _ = built
    with Searcher.open(path) as s:
        with pytest.raises(ConfigError, match="k: expected an int >= 1, got 0"):
            s.search(q, k=0)
        with pytest.raises(DimensionMismatchError, match=f"expected dim {DIM}, got 3"):
            s.search(MultiVectors.from_arrays([np.ones((2, 3), np.float32)]))
        with pytest.raises(EmptyInputError):
            s.search([])
        with pytest.raises(ConfigError, match="built from vectors without an encoder"):
            s.search(["some text"])


def test_int8_table_close_to_float(tmp_path: Path) -> None:
    docs = clustered_docs(200, seed=8)
    build_index(tmp_path, docs, None, small_config(table_dtype="int8"), progress=False)
    q = queries_like(docs, 6)
    ref = brute_maxsim(q, [v for _, v in docs])
    with Searcher.open(tmp_path) as s:
        res = s.exhaustive(q, k=5)
        for qi in range(len(q)):
            assert_topk_matches(res.ids[qi], res.scores[qi], ref[qi], [i for i, _ in docs], 5,
                                tol=0.05)


def test_text_queries_with_the_index_encoder(tmp_path: Path) -> None:
    enc = HashEncoder()
    texts = [(f"d{i}", f"alpha{i % 7} beta{i % 11} gamma{i % 13}") for i in range(120)]
    build_index(tmp_path, texts, enc, small_config(), progress=False)
    with Searcher.open(tmp_path, encoder=enc) as s:
        res = s.search(["alpha3 beta5 gamma2"], k=3, candidates=120)
        exact = s.exhaustive(enc.encode_queries(["alpha3 beta5 gamma2"]), k=3)
        assert res.ids == exact.ids
        best = texts[int(res.ids[0][0][1:])][1]
        assert {"alpha3", "beta5", "gamma2"} & set(best.split())
        assert s.get_texts(res.ids[0][:1]) == [best]


def test_reranking_in_bounded_query_groups(built, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import serving._searcher as searcher_mod

    path, _, _, q, _ = built
    with Searcher.open(path) as s:
        whole = s.search(q, k=8, candidates=100)
        monkeypatch.setattr(searcher_mod, "_RERANK_BYTES", 1)  # one query per group
        assert len(s._rerank_groups(np.zeros((len(q), 3), np.int64))) == len(q)
        grouped = s.search(q, k=8, candidates=100)
    assert grouped.ids == whole.ids
    for a, b in zip(grouped.scores, whole.scores, strict=True):
        np.testing.assert_array_equal(a, b)
