"""Readers of an index's small JSON files that refuse malformed content.

``ids.jsonl`` (one JSON string per line), ``.build/progress.json`` and the tombstones
file are read here: what is wrong raises :class:`~mvr.errors.CorruptIndexError` naming
the file and the line (or the segment, or the row), never a bare ``JSONDecodeError``,
``KeyError`` or ``IndexError`` from deep inside a reader.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mvr.errors import CorruptIndexError

__all__ = ["read_json", "read_string_lines", "read_tombstones"]


def read_json(path: str | os.PathLike[str], required: Sequence[str] = ()) -> Any:
    """The JSON value in ``path``; with ``required``, an object holding those keys."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorruptIndexError(f"{path}: expected UTF-8 JSON, got undecodable bytes ({e})") from e
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise CorruptIndexError(
            f"{path}: not valid JSON at line {e.lineno}, column {e.colno}: {e.msg}"
        ) from e
    if required:
        if not isinstance(value, dict):
            raise CorruptIndexError(f"{path}: expected a JSON object, got {type(value).__name__}")
        missing = [k for k in required if k not in value]
        if missing:
            raise CorruptIndexError(f"{path}: expected keys {list(required)}, missing {missing}")
    return value


def read_string_lines(path: str | os.PathLike[str]) -> list[str]:
    """One JSON string per line (``ids.jsonl``), in order.

    Parsed as one JSON array (one ``json.loads`` per line took 4 s of a 700k-document
    open); anything that is not one string per line is then located line by line."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        lines = data.decode("utf-8").split("\n")  # as the file iterates: by b"\n" only
        if lines and lines[-1] == "":
            lines.pop()
        values = json.loads("[" + ",".join(lines) + "]")
        if len(values) == len(lines) and all(type(v) is str for v in values):
            return values
    except (json.JSONDecodeError, UnicodeDecodeError):
        pass
    return _string_lines_checked(path)


def _string_lines_checked(path: str | os.PathLike[str]) -> list[str]:
    """:func:`read_string_lines` one line at a time, naming the first bad line."""
    out: list[str] = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                value = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise CorruptIndexError(f"{path}: line {lineno} is not valid JSON ({e})") from e
            if not isinstance(value, str):
                raise CorruptIndexError(
                    f"{path}: line {lineno}: expected a JSON string (a document id), got "
                    f"{type(value).__name__} {value!r}"
                )
            out.append(value)
    return out


def read_tombstones(
    path: str | os.PathLike[str], segments: Mapping[str, int]
) -> dict[str, list[int]]:
    """The deleted rows per segment, checked against ``segments`` (name -> documents):
    every name must be a segment of the manifest and every row in range."""
    value = read_json(path)
    if not isinstance(value, dict):
        raise CorruptIndexError(
            f"{path}: expected a JSON object (segment -> rows), got {type(value).__name__}"
        )
    out: dict[str, list[int]] = {}
    for name, rows in value.items():
        if name not in segments:
            raise CorruptIndexError(
                f"{path}: rows of segment {name!r}, which the manifest does not list "
                f"(expected one of {sorted(segments)})"
            )
        if not isinstance(rows, list) or not all(
            isinstance(r, int) and not isinstance(r, bool) for r in rows
        ):
            raise CorruptIndexError(
                f"{path}: segment {name!r}: expected a list of rows (ints), got {rows!r:.80}"
            )
        n = int(segments[name])
        bad = [r for r in rows if not 0 <= r < n]
        if bad:
            raise CorruptIndexError(
                f"{path}: segment {name!r}: row {bad[0]} out of range, expected 0 <= row < {n}"
            )
        out[name] = list(rows)
    return out
