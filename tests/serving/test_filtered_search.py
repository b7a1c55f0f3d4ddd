"""Filtered search: masks against a brute-force predicate over every document, filtered
search against exact MaxSim within the filter, bad filters -> precise errors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from index_testlib import brute_maxsim, clustered_docs, queries_like, small_config  # noqa: E402

import indexing  # noqa: E402
from mvr._filters import And, Eq, Filter, Ids, In, Not, Or, Range  # noqa: E402
from mvr.errors import InvalidFilterError, InvalidInputError  # noqa: E402
from serving import Searcher  # noqa: E402
from serving._filtered_search import SELECTIVE_FACTOR  # noqa: E402
from serving._filters import filter_mask  # noqa: E402
from serving._metadata import metadata_summary  # noqa: E402

N = 400


def exact_config():
    """float16 table, no approximate stage: search results are exact MaxSim of stored
    float16 vectors (the oracle's)."""
    import dataclasses

    from mvr import IndexConfig

    names = {f.name for f in dataclasses.fields(IndexConfig)}
    return small_config(table_dtype="float16", **({"approx": False} if "approx" in names else {}))
LANGS = ["en", "fr", "de", "es"]
TAGS = ["bio", "med", "cs", "math", "law"]


def make_metadata(n: int, seed: int = 0) -> list[dict | None]:
    rng = np.random.default_rng(seed)
    out: list[dict | None] = []
    for i in range(n):
        if i % 11 == 0:
            out.append(None)
            continue
        m = {"bucket": int(rng.integers(0, 1000)), "lang": LANGS[int(rng.integers(4))],
             "tags": [TAGS[j] for j in rng.choice(5, size=int(rng.integers(0, 3)), replace=False)],
             "score": float(np.round(rng.random(), 3)), "ok": bool(rng.integers(2))}
        if i % 5 == 0:
            del m["lang"]
        out.append(m)
    return out


def reference(f: Filter, doc_id: str, meta: dict | None) -> bool:
    """The predicate, evaluated on one document's metadata dict (the brute force)."""
    meta = meta or {}
    if isinstance(f, And):
        return all(reference(c, doc_id, meta) for c in f.clauses)
    if isinstance(f, Or):
        return any(reference(c, doc_id, meta) for c in f.clauses)
    if isinstance(f, Not):
        return not reference(f.clause, doc_id, meta)
    if isinstance(f, Ids):
        return doc_id in f.ids
    if f.field not in meta:
        return False
    v = meta[f.field]
    if isinstance(f, Range):
        return ((f.gt is None or v > f.gt) and (f.gte is None or v >= f.gte)
                and (f.lt is None or v < f.lt) and (f.lte is None or v <= f.lte))
    values = [f.value] if isinstance(f, Eq) else list(f.values)
    if isinstance(v, list):
        return any(x in v for x in values)
    return any(x == v and type(x) is not bool or (isinstance(x, bool) and x is v) for x in values)


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    """Two segments (a build and an add), one deleted document, metadata on most docs."""
    root = tmp_path_factory.mktemp("filtered") / "idx"
    docs = clustered_docs(N, seed=3)
    metas = make_metadata(N)
    items = [{"id": d, "vectors": v, "metadata": m} for (d, v), m in zip(docs, metas, strict=True)]
    indexing.build_index(root, items[:300], None, exact_config(), progress=False)
    with indexing.IndexWriter(root) as w:
        w.add(items[300:])
        w.delete(["doc-7"])
    s = Searcher.open(root)
    yield {"root": root, "searcher": s, "docs": docs, "metas": dict(zip([d for d, _ in docs], metas, strict=True))}
    s.close()


# ---------------------------------------------------------------------- masks
leaf = st.one_of(
    st.builds(lambda v: Eq(field="lang", value=v), st.sampled_from(LANGS + ["xx"])),
    st.builds(lambda vs: In(field="lang", values=tuple(vs)), st.lists(st.sampled_from(LANGS + ["xx"]), min_size=1, max_size=3)),
    st.builds(lambda v: Eq(field="tags", value=v), st.sampled_from(TAGS)),
    st.builds(lambda vs: In(field="tags", values=tuple(vs)), st.lists(st.sampled_from(TAGS), min_size=1, max_size=3)),
    st.builds(lambda v: Eq(field="ok", value=v), st.booleans()),
    st.builds(lambda v: Eq(field="bucket", value=v), st.integers(0, 999)),
    st.builds(lambda vs: In(field="bucket", values=tuple(vs)), st.lists(st.integers(0, 999), min_size=1, max_size=4)),
    st.builds(lambda lo, w: Range(field="bucket", gte=lo, lt=lo + w), st.integers(-10, 1000), st.integers(0, 600)),
    st.builds(lambda lo: Range(field="score", gt=lo), st.floats(0, 1)),
    st.builds(lambda hi: Range(field="score", lte=hi), st.floats(0, 1)),
    st.builds(lambda ids: Ids(ids=tuple(ids)), st.lists(st.sampled_from([f"doc-{i}" for i in range(0, N, 7)] + ["nope"]), max_size=6)),
)
filters = st.recursive(leaf, lambda sub: st.one_of(
    st.builds(lambda cs: And(clauses=tuple(cs)), st.lists(sub, min_size=1, max_size=3)),
    st.builds(lambda cs: Or(clauses=tuple(cs)), st.lists(sub, min_size=1, max_size=3)),
    st.builds(lambda c: Not(clause=c), sub),
), max_leaves=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(f=filters)
def test_mask_equals_the_predicate_on_every_document(index, f):
    s = index["searcher"]
    mask = filter_mask(s, f)
    want = np.array([reference(f, d, index["metas"][d]) for d in s.ids])
    live = s.allowed  # a deleted row's value does not matter (ids of deleted rows are unknown)
    np.testing.assert_array_equal(mask[live], want[live])


# ---------------------------------------------------------------------- search
def _exhaustive_within(index, q, keep: np.ndarray, k: int):
    s = index["searcher"]
    rows = np.flatnonzero(keep & s.allowed)
    vecs = dict(index["docs"])
    ref = brute_maxsim(q, [vecs[s.ids[r]].astype(np.float16).astype(np.float32) for r in rows])
    return rows, ref


@pytest.mark.parametrize("flt", [
    {"field": "bucket", "lt": 500},                                  # ~50%: first stage with the mask
    {"field": "bucket", "lt": 100},                                  # ~10%
    {"field": "bucket", "lt": 10},                                   # ~1%: exact over the allowed rows
    {"and": [{"field": "tags", "in": ["bio", "law"]}, {"not": {"field": "lang", "eq": "en"}}]},
    {"ids": ["doc-1", "doc-7", "doc-350", "missing"]},               # doc-7 is deleted
])
def test_filtered_search_equals_exhaustive_within_the_filter(index, flt):
    s = index["searcher"]
    q = queries_like(index["docs"], 6, seed=9)
    keep = filter_mask(s, flt)
    rows, ref = _exhaustive_within(index, q, keep, 10)
    k = 10
    res = s.search(q, k=k, candidates=N, filter=flt)  # N candidates: the first stage is exact
    for i in range(len(q)):
        got_ids, got = res.ids[i], res.scores[i]
        assert len(got_ids) == min(k, len(rows))
        assert all(keep[s._id_to_row[d]] and d != "doc-7" for d in got_ids)
        np.testing.assert_allclose(got, np.sort(ref[i])[::-1][: len(got)], atol=2e-3)


def test_selective_filter_skips_the_first_stage(index, monkeypatch):
    s = index["searcher"]
    called = []
    monkeypatch.setattr(s.first_stage, "search", lambda *a, **kw: called.append(1))
    q = queries_like(index["docs"], 2, seed=4)
    flt = {"field": "bucket", "lt": 40}  # ~4% of 400 rows = 16 <= 4 x N
    assert filter_mask(s, flt).sum() <= SELECTIVE_FACTOR * 10
    res = s.search(q, k=5, candidates=10, filter=flt)
    assert not called and all(len(x) == 5 for x in res.ids)


def test_a_filter_matching_nothing_returns_empty_lists(index):
    res = index["searcher"].search(queries_like(index["docs"], 2), k=5,
                                   filter={"field": "lang", "eq": "xx"})
    assert res.ids == [[], []] and all(len(x) == 0 for x in res.scores)


def test_unfiltered_search_is_unchanged(index):
    s = index["searcher"]
    q = queries_like(index["docs"], 3, seed=2)
    a, b = s.search(q, k=5), s.search(q, k=5, filter={"not": {"ids": []}})
    assert a.ids == b.ids


@pytest.mark.parametrize("flt, message", [
    ({"field": "colour", "eq": "red"}, "filter: unknown metadata field 'colour'; expected one of 'bucket'"),
    ({"field": "lang", "gte": 3}, "filter: 'range' on field 'lang' expects a field of type number, got a string field"),
    ({"and": [{"field": "ok", "eq": True}, {"field": "bucket", "eq": "7"}]},
     "filter.and[1].eq: field 'bucket' holds number values, got string '7'"),
    ({"field": "tags", "in": ["bio", 3]}, "filter.in[1]: field 'tags' holds string values, got number 3"),
    ({"field": "ok", "eq": 1}, "filter.eq: field 'ok' holds boolean values, got number 1"),
    ({"field": "bucket", "eq": True}, "filter.eq: field 'bucket' holds number values, got boolean True"),
])
def test_filters_that_do_not_fit_the_fields_are_refused(index, flt, message):
    with pytest.raises(InvalidFilterError) as e:
        index["searcher"].search(queries_like(index["docs"], 1), k=3, filter=flt)
    assert message in str(e.value)


def test_metadata_summary(index):
    s = index["searcher"]
    summary = metadata_summary(s)
    live = [m for d, m in index["metas"].items() if d != "doc-7"]
    assert summary["documents"] == N - 1
    f = summary["fields"]
    assert set(f) == {"bucket", "lang", "tags", "score", "ok"}
    assert f["lang"] == {"type": "string", "documents": sum(1 for m in live if m and "lang" in m),
                         "distinct": 4}
    assert f["bucket"]["type"] == "number"
    assert f["bucket"]["min"] == min(m["bucket"] for m in live if m)
    assert f["tags"]["type"] == "string_list" and f["tags"]["distinct"] == 5
    assert f["ok"] == {"type": "boolean", "documents": sum(1 for m in live if m)}


def test_compaction_keeps_metadata(tmp_path):
    docs = clustered_docs(150, seed=1)
    metas = make_metadata(150, seed=2)
    items = [{"id": d, "vectors": v, "metadata": m} for (d, v), m in zip(docs, metas, strict=True)]
    root = tmp_path / "idx"
    indexing.build_index(root, items[:100], None, exact_config(), progress=False)
    with indexing.IndexWriter(root) as w:
        w.add(items[100:])
        w.delete(["doc-3", "doc-120"])
        w.compact()
    flt = Or(clauses=(Eq(field="lang", value="fr"), Range(field="bucket", gte=900)))
    by_id = dict(zip([d for d, _ in docs], metas, strict=True))
    with Searcher.open(root) as s:
        assert len(s.manifest["segments"]) == 1
        mask = filter_mask(s, flt)
        np.testing.assert_array_equal(mask, [reference(flt, d, by_id[d]) for d in s.ids])


def test_bad_metadata_is_refused_at_build(tmp_path):
    docs = clustered_docs(4, seed=1)
    bad = [{"id": "a", "vectors": docs[0][1], "metadata": {"x": {"nested": 1}}}]
    with pytest.raises(InvalidInputError, match="document 'a': metadata field 'x': expected a string"):
        indexing.build_index(tmp_path / "i1", bad, None, exact_config(), progress=False)
    conflict = [{"id": "a", "vectors": docs[0][1], "metadata": {"x": 1}},
                {"id": "b", "vectors": docs[1][1], "metadata": {"x": "one"}}]
    with pytest.raises(InvalidInputError,
                       match="document 'b': metadata field 'x': expected number .as in document 'a'., got string"):
        indexing.build_index(tmp_path / "i2", conflict, None, exact_config(), progress=False)


def test_with_centroid_ids_the_allowed_rows_are_the_candidates(tmp_path, monkeypatch):
    import dataclasses
    import inspect

    from mvr import IndexConfig

    if "approx" not in {f.name for f in dataclasses.fields(IndexConfig)} or \
            "rerank_candidates" not in inspect.signature(Searcher.search).parameters:
        pytest.skip("this tree has no approximate (centroid id) stage")
    docs = clustered_docs(N, seed=3)
    metas = make_metadata(N)
    items = [{"id": d, "vectors": v, "metadata": m} for (d, v), m in zip(docs, metas, strict=True)]
    indexing.build_index(tmp_path / "i", items, None,
                         small_config(table_dtype="float16", approx=True), progress=False)
    q = queries_like(docs, 4, seed=6)
    flt = {"field": "bucket", "lt": 100}  # ~10%: ~40 rows
    with Searcher.open(tmp_path / "i") as s:
        assert s._cids is not None
        keep = filter_mask(s, flt)
        n_keep = int((keep & s.allowed).sum())
        assert 4 * 5 < n_keep <= 4 * 50
        calls = []
        monkeypatch.setattr(s.first_stage, "search", lambda *a, **kw: calls.append(1))
        approx = s.search(q, k=5, candidates=50, rerank_candidates=5, filter=flt)
        exact = s.search(q, k=5, candidates=50, rerank_candidates=n_keep, filter=flt)
        assert not calls
        rows, ref = _exhaustive_within({"searcher": s, "docs": docs}, q, keep, 5)
        for i in range(len(q)):
            assert all(keep[s._id_to_row[d]] for d in approx.ids[i])
            np.testing.assert_allclose(exact.scores[i], np.sort(ref[i])[::-1][:5], atol=2e-3)


def test_an_index_without_metadata(tmp_path):
    docs = clustered_docs(20, seed=1)
    indexing.build_index(tmp_path / "i", docs, None, exact_config(), progress=False)
    with Searcher.open(tmp_path / "i") as s:
        assert metadata_summary(s) == {"documents": 20, "fields": {}}
        with pytest.raises(InvalidFilterError, match="unknown metadata field 'lang'; the index has no metadata fields"):
            s.search(queries_like(docs, 1), k=3, filter={"field": "lang", "eq": "en"})
        res = s.search(queries_like(docs, 1), k=3, filter={"ids": ["doc-1", "doc-2"]})
        assert sorted(res.ids[0]) == ["doc-1", "doc-2"]
