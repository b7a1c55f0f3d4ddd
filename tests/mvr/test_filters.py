"""The filter model: JSON round trips and precise errors for malformed filters."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mvr._filters import And, Eq, Ids, In, Not, Or, Range, filter_to_dict, parse_filter
from mvr.errors import InvalidFilterError

fields = st.sampled_from(["lang", "year", "tags", "ok"])
scalars = st.one_of(st.text(max_size=5), st.integers(-5, 5), st.booleans(),
                    st.floats(-10, 10, allow_nan=False))
leaves = st.one_of(
    st.builds(lambda f, v: Eq(field=f, value=v), fields, scalars),
    st.builds(lambda f, vs: In(field=f, values=tuple(vs)), fields, st.lists(scalars, min_size=1, max_size=3)),
    st.builds(lambda f, lo, hi: Range(field=f, gte=lo, lt=hi), fields, st.integers(-5, 5), st.integers(-5, 5)),
    st.builds(lambda ids: Ids(ids=tuple(ids)), st.lists(st.text(max_size=4), max_size=3)),
)
trees = st.recursive(leaves, lambda sub: st.one_of(
    st.builds(lambda cs: And(clauses=tuple(cs)), st.lists(sub, min_size=1, max_size=3)),
    st.builds(lambda cs: Or(clauses=tuple(cs)), st.lists(sub, min_size=1, max_size=3)),
    st.builds(lambda c: Not(clause=c), sub),
), max_leaves=8)


@settings(max_examples=200, deadline=None)
@given(trees)
def test_json_round_trip(tree):
    assert parse_filter(filter_to_dict(tree)) == tree


def test_a_filter_object_passes_through():
    f = Eq(field="lang", value="en")
    assert parse_filter(f) is f


@pytest.mark.parametrize("bad, message", [
    (3, "filter: expected a JSON object, got int 3"),
    ({}, "filter: expected one of 'and', 'or', 'not', 'ids' or 'field'"),
    ({"field": "year", "gte": "2000"}, "filter.gte: expected a number, got str '2000'"),
    ({"field": "year", "gte": True}, "filter.gte: expected a number, got bool True"),
    ({"field": "year", "lt": float("inf")}, "filter.lt: expected a finite number, got inf"),
    ({"field": "year", "gt": 1, "gte": 2}, "filter: expected 'gt' or 'gte', got both"),
    ({"and": []}, "filter.and: expected a non-empty list of filters, got []"),
    ({"or": [{"field": "a", "eq": 1}, {"x": 1}]}, "filter.or[1]: expected one of"),
    ({"not": {"field": "a", "eq": [1]}}, "filter.not.eq: expected a string, number or boolean, got list"),
    ({"field": "a", "in": []}, "filter.in: expected a non-empty list of values, got []"),
    ({"field": "a", "in": ["x", {}]}, "filter.in[1]: expected a string, number or boolean, got dict"),
    ({"field": "a", "eq": 1, "in": [1]}, "filter: expected only ['eq'] in this clause, got also ['in']"),
    ({"field": "", "eq": 1}, "filter.field: expected a non-empty string, got ''"),
    ({"field": "a", "like": "x"}, "filter: expected 'eq', 'in' or range bounds"),
    ({"ids": "d1"}, "filter.ids: expected a list of strings, got 'd1'"),
    ({"ids": ["d1", 2]}, "filter.ids[1]: expected a string, got 2"),
    ({"and": [{"field": "a", "eq": 1}], "or": []}, "filter: expected only ['and'] in this clause"),
])
def test_malformed_filters_name_the_clause(bad, message):
    with pytest.raises(InvalidFilterError) as e:
        parse_filter(bad)
    assert message in str(e.value)
    assert isinstance(e.value, ValueError)


def test_nesting_is_limited():
    f: dict = {"field": "a", "eq": 1}
    for _ in range(40):
        f = {"not": f}
    with pytest.raises(InvalidFilterError, match="expected at most 32 nested clauses"):
        parse_filter(f)


def test_dataclasses_validate_too():
    with pytest.raises(InvalidFilterError, match="expected at least one of gt, gte, lt, lte"):
        Range(field="year")
    with pytest.raises(InvalidFilterError, match="filter.and: expected a non-empty list"):
        And(clauses=())
