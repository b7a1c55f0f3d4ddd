"""Evaluate a search filter (:mod:`mvr._filters`) to a boolean row mask.

Every clause becomes numpy work over a segment's cached metadata columns
(:mod:`serving._metadata`): codes compared or ``np.isin``-ed for strings, list
membership reduced per row through the offsets, comparisons for numbers. The
mask has one entry per row of the searcher's snapshot (deleted rows included;
the searcher ANDs it with its tombstone mask).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mvr._filters import And, Eq, Filter, Ids, In, Not, Or, Range, parse_filter
from mvr.errors import InvalidFilterError
from serving._metadata import FieldColumn, IndexMetadata, index_metadata

__all__ = ["filter_mask", "evaluate_filter"]


def filter_mask(searcher: Any, filter: Any) -> np.ndarray:
    """Rows of ``searcher`` that ``filter`` (a filter tree or its JSON form) keeps.

    Returns
    -------
    np.ndarray
        Shape: (n_rows,) bool, in the searcher's row order (deleted rows included).

    Raises
    ------
    InvalidFilterError
        A malformed filter, an unknown field, or a clause that does not fit the field's
        type (``range`` on strings, a string compared with a number field, ...).
    """
    tree = parse_filter(filter)
    return evaluate_filter(tree, index_metadata(searcher), searcher._id_to_row)


def evaluate_filter(tree: Filter, meta: IndexMetadata, id_to_row: dict[str, int]) -> np.ndarray:
    """:func:`filter_mask` over explicit metadata and an id -> row map."""
    known = meta.field_types()
    _check(tree, known, "filter")
    return _eval(tree, meta, id_to_row)


# ---------------------------------------------------------------------- checks
_ALLOWED = {  # clause -> field types it applies to
    "eq": ("string", "string_list", "number", "boolean"),
    "in": ("string", "string_list", "number", "boolean"),
    "range": ("number",),
}


def _value_kind(v: Any) -> str:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    return "string"


def _check(node: Filter, known: dict[str, list[str]], where: str) -> None:
    if isinstance(node, (And, Or)):
        op = "and" if isinstance(node, And) else "or"
        for i, c in enumerate(node.clauses):
            _check(c, known, f"{where}.{op}[{i}]")
        return
    if isinstance(node, Not):
        _check(node.clause, known, f"{where}.not")
        return
    if isinstance(node, Ids):
        return
    op = "eq" if isinstance(node, Eq) else "in" if isinstance(node, In) else "range"
    kinds = known.get(node.field)
    if kinds is None:
        if not known:
            raise InvalidFilterError(
                f"{where}: unknown metadata field {node.field!r}; the index has no metadata "
                "fields (only an 'ids' filter applies)"
            )
        raise InvalidFilterError(
            f"{where}: unknown metadata field {node.field!r}; expected one of "
            f"{', '.join(repr(k) for k in known)}"
        )
    for kind in kinds:
        if kind not in _ALLOWED[op]:
            raise InvalidFilterError(
                f"{where}: {op!r} on field {node.field!r} expects a field of type "
                f"{' or '.join(_ALLOWED[op])}, got a {kind} field"
            )
    if op == "range":
        return
    values = (node.value,) if isinstance(node, Eq) else node.values
    for i, v in enumerate(values):
        want = {("string" if k == "string_list" else k) for k in kinds}
        got = _value_kind(v)
        if got not in want:
            at = f"{where}.{op}" if isinstance(node, Eq) else f"{where}.in[{i}]"
            raise InvalidFilterError(
                f"{at}: field {node.field!r} holds {'/'.join(sorted(want))} values, got "
                f"{got} {v!r}"
            )


# ---------------------------------------------------------------------- evaluation
def _eval(node: Filter, meta: IndexMetadata, id_to_row: dict[str, int]) -> np.ndarray:
    n = meta.num_documents
    if isinstance(node, And):
        out = _eval(node.clauses[0], meta, id_to_row)
        for c in node.clauses[1:]:
            out &= _eval(c, meta, id_to_row)
        return out
    if isinstance(node, Or):
        out = _eval(node.clauses[0], meta, id_to_row)
        for c in node.clauses[1:]:
            out |= _eval(c, meta, id_to_row)
        return out
    if isinstance(node, Not):
        return ~_eval(node.clause, meta, id_to_row)
    if isinstance(node, Ids):
        out = np.zeros(n, dtype=bool)
        rows = [id_to_row[d] for d in node.ids if d in id_to_row]
        out[np.asarray(rows, dtype=np.int64)] = True
        return out
    out = np.zeros(n, dtype=bool)
    for i, seg in enumerate(meta.segments):
        col = seg.column(node.field)
        if col is not None:
            out[meta.starts[i] : meta.starts[i + 1]] = _leaf(node, col)
    return out


def _leaf(node: Eq | In | Range, col: FieldColumn) -> np.ndarray:
    if isinstance(node, Range):
        v = col.values
        keep = col.present.copy()
        if node.gt is not None:
            keep &= v > node.gt
        if node.gte is not None:
            keep &= v >= node.gte
        if node.lt is not None:
            keep &= v < node.lt
        if node.lte is not None:
            keep &= v <= node.lte
        return keep
    values = [node.value] if isinstance(node, Eq) else list(node.values)
    if col.kind in ("string", "string_list"):
        codes = col.codes_of([str(v) for v in values])
        hit = np.isin(col.values, codes) if len(codes) else np.zeros(len(col.values), bool)
        if col.kind == "string":
            return hit
        assert col.offsets is not None
        csum = np.zeros(len(hit) + 1, dtype=np.int64)
        np.cumsum(hit, out=csum[1:])
        return (csum[col.offsets[1:]] - csum[col.offsets[:-1]]) > 0
    if col.kind == "boolean":
        want = np.asarray(values, dtype=bool)
        return col.present & np.isin(col.values, want)
    want_n = np.asarray(values, dtype=np.float64 if col.values.dtype.kind == "f" or any(
        isinstance(v, float) for v in values) else np.int64)
    return col.present & np.isin(col.values, want_n)
