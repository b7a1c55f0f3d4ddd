"""Search filters: a small predicate language over document metadata and ids.

A filter is a tree of frozen dataclasses, or the same tree as plain JSON (what
``POST /search`` takes; :func:`parse_filter` turns one into the other)::

    {"field": "lang", "eq": "en"}                  Eq(field="lang", value="en")
    {"field": "tags", "in": ["bio", "med"]}        In(field="tags", values=("bio", "med"))
    {"field": "year", "gte": 2000, "lt": 2010}     Range(field="year", gte=2000, lt=2010)
    {"and": [f, ...]}  {"or": [f, ...]}            And(clauses=(...)), Or(clauses=(...))
    {"not": f}                                     Not(clause=f)
    {"ids": ["doc-1", "doc-7"]}                    Ids(ids=("doc-1", "doc-7"))

Semantics (per document): ``eq`` is true when the field equals the value, or, for a
list-of-strings field, contains it; ``in`` when ``eq`` holds for any of the values;
a range when the number field lies within every given bound; a document without
the field matches no ``eq``/``in``/range (so ``not`` of one matches it). ``ids`` is
an allow-list of document ids (ids not in the index match nothing). Which field
types a clause accepts is checked against the index when the filter is evaluated
(:func:`serving.filter_mask`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from mvr.errors import InvalidFilterError

__all__ = ["Eq", "In", "Range", "And", "Or", "Not", "Ids", "Filter", "parse_filter", "filter_to_dict"]

Scalar = str | int | float | bool
MAX_DEPTH = 32  # nesting limit: a filter is a query, not a program


def _check_field(field: Any, where: str) -> None:
    if not isinstance(field, str) or not field:
        raise InvalidFilterError(f"{where}.field: expected a non-empty string, got {field!r}")


def _check_scalar(value: Any, where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidFilterError(f"{where}: expected a finite number, got {value!r}")
    if not isinstance(value, (str, int, float, bool)):
        raise InvalidFilterError(
            f"{where}: expected a string, number or boolean, got {type(value).__name__} {value!r}"
        )


def _check_bound(value: Any, where: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidFilterError(f"{where}: expected a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise InvalidFilterError(f"{where}: expected a finite number, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class Eq:
    """``field == value`` (for a list-of-strings field: the list contains ``value``)."""

    field: str
    value: Scalar

    def __post_init__(self) -> None:
        _check_field(self.field, "filter")
        _check_scalar(self.value, "filter.eq")


@dataclass(frozen=True, kw_only=True)
class In:
    """``field`` equals one of ``values`` (a list field: shares at least one of them)."""

    field: str
    values: tuple[Scalar, ...]

    def __post_init__(self) -> None:
        _check_field(self.field, "filter")
        if not isinstance(self.values, tuple) or not self.values:
            raise InvalidFilterError(
                f"filter.in: expected a non-empty list of values, got {self.values!r}"
            )
        for i, v in enumerate(self.values):
            _check_scalar(v, f"filter.in[{i}]")


@dataclass(frozen=True, kw_only=True)
class Range:
    """A number field within bounds: ``gt``/``gte`` below, ``lt``/``lte`` above (at least one)."""

    field: str
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None

    def __post_init__(self) -> None:
        _check_field(self.field, "filter")
        for name in ("gt", "gte", "lt", "lte"):
            _check_bound(getattr(self, name), f"filter.{name}")
        if all(getattr(self, n) is None for n in ("gt", "gte", "lt", "lte")):
            raise InvalidFilterError(
                f"filter on {self.field!r}: expected at least one of gt, gte, lt, lte, got none"
            )
        if self.gt is not None and self.gte is not None:
            raise InvalidFilterError(f"filter on {self.field!r}: expected gt or gte, got both")
        if self.lt is not None and self.lte is not None:
            raise InvalidFilterError(f"filter on {self.field!r}: expected lt or lte, got both")


@dataclass(frozen=True, kw_only=True)
class And:
    """Every clause holds."""

    clauses: tuple[Filter, ...]

    def __post_init__(self) -> None:
        _check_clauses(self.clauses, "and")


@dataclass(frozen=True, kw_only=True)
class Or:
    """At least one clause holds."""

    clauses: tuple[Filter, ...]

    def __post_init__(self) -> None:
        _check_clauses(self.clauses, "or")


@dataclass(frozen=True, kw_only=True)
class Not:
    """The clause does not hold."""

    clause: Filter

    def __post_init__(self) -> None:
        if not isinstance(self.clause, _NODES):
            raise InvalidFilterError(f"filter.not: expected a filter, got {self.clause!r}")


@dataclass(frozen=True, kw_only=True)
class Ids:
    """An allow-list of document ids."""

    ids: tuple[str, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.ids, tuple):
            raise InvalidFilterError(f"filter.ids: expected a list of strings, got {self.ids!r}")
        for i, d in enumerate(self.ids):
            if not isinstance(d, str):
                raise InvalidFilterError(f"filter.ids[{i}]: expected a string, got {d!r}")


Filter = Eq | In | Range | And | Or | Not | Ids
_NODES = (Eq, In, Range, And, Or, Not, Ids)


def _check_clauses(clauses: Any, op: str) -> None:
    if not isinstance(clauses, tuple) or not clauses:
        raise InvalidFilterError(f"filter.{op}: expected a non-empty list of filters, got {clauses!r}")
    for i, c in enumerate(clauses):
        if not isinstance(c, _NODES):
            raise InvalidFilterError(f"filter.{op}[{i}]: expected a filter, got {c!r}")


# ---------------------------------------------------------------------- JSON form
_RANGE_KEYS = ("gt", "gte", "lt", "lte")


def parse_filter(obj: Any) -> Filter:
    """The filter tree of a JSON filter (a filter object is returned as it is).

    Raises
    ------
    InvalidFilterError
        Names the offending clause by its path (``filter.and[1].not``) and the
        expected and actual value.
    """
    if isinstance(obj, _NODES):
        return obj
    return _parse(obj, "filter", 0)


def _parse(obj: Any, where: str, depth: int) -> Filter:
    if depth > MAX_DEPTH:
        raise InvalidFilterError(f"{where}: expected at most {MAX_DEPTH} nested clauses, got more")
    if not isinstance(obj, dict):
        raise InvalidFilterError(f"{where}: expected a JSON object, got {type(obj).__name__} {obj!r}")
    keys = set(obj)
    for op in ("and", "or"):
        if op in keys:
            _only(keys, {op}, where)
            items = obj[op]
            if not isinstance(items, list) or not items:
                raise InvalidFilterError(
                    f"{where}.{op}: expected a non-empty list of filters, got {items!r}"
                )
            clauses = tuple(_parse(c, f"{where}.{op}[{i}]", depth + 1) for i, c in enumerate(items))
            return And(clauses=clauses) if op == "and" else Or(clauses=clauses)
    if "not" in keys:
        _only(keys, {"not"}, where)
        return Not(clause=_parse(obj["not"], f"{where}.not", depth + 1))
    if "ids" in keys:
        _only(keys, {"ids"}, where)
        ids = obj["ids"]
        if not isinstance(ids, list):
            raise InvalidFilterError(f"{where}.ids: expected a list of strings, got {ids!r}")
        for i, d in enumerate(ids):
            if not isinstance(d, str):
                raise InvalidFilterError(f"{where}.ids[{i}]: expected a string, got {d!r}")
        return Ids(ids=tuple(ids))
    if "field" not in keys:
        raise InvalidFilterError(
            f"{where}: expected one of 'and', 'or', 'not', 'ids' or 'field' (with 'eq', 'in' or "
            f"a range), got keys {sorted(keys)}"
        )
    field = obj["field"]
    _check_field(field, where)
    ops = keys - {"field"}
    if "eq" in ops:
        _only(ops, {"eq"}, where)
        _check_scalar(obj["eq"], f"{where}.eq")
        return Eq(field=field, value=obj["eq"])
    if "in" in ops:
        _only(ops, {"in"}, where)
        values = obj["in"]
        if not isinstance(values, list) or not values:
            raise InvalidFilterError(f"{where}.in: expected a non-empty list of values, got {values!r}")
        for i, v in enumerate(values):
            _check_scalar(v, f"{where}.in[{i}]")
        return In(field=field, values=tuple(values))
    if ops and ops <= set(_RANGE_KEYS):
        for name in sorted(ops):
            _check_bound(obj[name], f"{where}.{name}")
        for a, b in (("gt", "gte"), ("lt", "lte")):
            if a in ops and b in ops:
                raise InvalidFilterError(f"{where}: expected {a!r} or {b!r}, got both")
        return Range(field=field, **{n: obj[n] for n in ops})
    raise InvalidFilterError(
        f"{where}: expected 'eq', 'in' or range bounds ({', '.join(_RANGE_KEYS)}) next to "
        f"'field', got keys {sorted(ops)}"
    )


def _only(keys: set[str], allowed: set[str], where: str) -> None:
    extra = keys - allowed
    if extra:
        raise InvalidFilterError(
            f"{where}: expected only {sorted(allowed)} in this clause, got also {sorted(extra)}"
        )


def filter_to_dict(f: Filter) -> dict[str, Any]:
    """The JSON form of a filter tree (``parse_filter(filter_to_dict(f)) == f``)."""
    if isinstance(f, Eq):
        return {"field": f.field, "eq": f.value}
    if isinstance(f, In):
        return {"field": f.field, "in": list(f.values)}
    if isinstance(f, Range):
        return {"field": f.field, **{n: getattr(f, n) for n in _RANGE_KEYS if getattr(f, n) is not None}}
    if isinstance(f, And):
        return {"and": [filter_to_dict(c) for c in f.clauses]}
    if isinstance(f, Or):
        return {"or": [filter_to_dict(c) for c in f.clauses]}
    if isinstance(f, Not):
        return {"not": filter_to_dict(f.clause)}
    if isinstance(f, Ids):
        return {"ids": list(f.ids)}
    raise InvalidFilterError(f"filter: expected a filter, got {f!r}")
