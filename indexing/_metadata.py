"""Document metadata: validation, crash-safe staging during a build, the columnar file.

Each document may carry a flat JSON object of fields whose values are strings,
numbers, booleans or lists of strings (``None`` = the field is absent). A build
appends every batch's metadata to a staging file in the build folder
(``.build/metadata.jsonl``, fsynced with the batch, rolled back on resume); when the
segment is finished the staging file becomes ``segments/<name>/metadata.arrow``, an
Arrow IPC file with one column per field (written only when some document has a
field), which a searcher memory-maps and filters on without Python objects per
document:

=============  =========================================  ===================================
type           Arrow column                               a filter reads
=============  =========================================  ===================================
string         dictionary<int32, utf8>                    int32 codes (-1 absent) + the values
number         int64 (all values ints) or float64         the values + a validity mask
boolean        bool                                       the values + a validity mask
string_list    list<dictionary<int32, utf8>>              flat codes + offsets
=============  =========================================  ===================================

The schema's metadata holds ``{"mvr_metadata": {"version": 1, "types": {field: type}}}``.
A field must have one type within a segment (ints and floats are both ``number``).
"""

from __future__ import annotations

import json
import math
import os
from array import array
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mvr._durable import fsync_file, writing
from mvr.errors import CorruptIndexError, InvalidInputError
from mvr.format import FIELD_TYPES, METADATA_FILE, METADATA_VERSION

__all__ = [
    "METADATA_FILE",
    "METADATA_VERSION",
    "FIELD_TYPES",
    "normalise_metadata",
    "MetadataStaging",
    "write_metadata_file",
]

STAGING_FILE = "metadata.jsonl"
_INT64 = (-(2**63), 2**63 - 1)


def _value_type(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidInputError(f"{where}: expected a finite number, got {value!r}")
        if isinstance(value, int) and not _INT64[0] <= value <= _INT64[1]:
            raise InvalidInputError(f"{where}: expected an int within int64, got {value!r}")
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            if not isinstance(v, str):
                raise InvalidInputError(
                    f"{where}[{i}]: expected a list of strings, got {type(v).__name__} {v!r}"
                )
        return "string_list"
    raise InvalidInputError(
        f"{where}: expected a string, number, boolean or list of strings, got "
        f"{type(value).__name__} {value!r}"
    )


def normalise_metadata(doc_id: str, metadata: Any) -> dict[str, Any] | None:
    """Check one document's metadata; return it with ``None`` fields dropped (``None``
    when nothing is left). Lists become lists of str; numpy scalars become Python ones.

    Raises
    ------
    InvalidInputError
        Not a flat object of strings / numbers / booleans / lists of strings; names the
        document and the field.
    """
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise InvalidInputError(
            f"document {doc_id!r}: metadata: expected a JSON object (dict), got "
            f"{type(metadata).__name__}"
        )
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not key:
            raise InvalidInputError(
                f"document {doc_id!r}: metadata: expected non-empty string field names, got {key!r}"
            )
        if value is None:
            continue
        if isinstance(value, np.generic):
            value = value.item()
        kind = _value_type(value, f"document {doc_id!r}: metadata field {key!r}")
        out[key] = list(value) if kind == "string_list" else value
    return out or None


class MetadataStaging:
    """Append-only ``metadata.jsonl`` in the build folder: one line per document.

    :meth:`add` writes (and fsyncs) a batch's metadata before the batch's vectors are
    written, so the staging file is never behind the segment's committed documents; a
    resumed build cuts it back to them (:meth:`open` with ``documents``). It also checks
    that every field keeps one type across the segment, so a conflict is reported at the
    batch that introduces it, naming both documents.
    """

    def __init__(self, build_dir: Path) -> None:
        self.path = Path(build_dir) / STAGING_FILE
        self._types: dict[str, tuple[str, str]] = {}  # field -> (type, first document)
        self.rows = 0

    @classmethod
    def open(cls, build_dir: Path, documents: int | None = None) -> MetadataStaging:
        """A new staging file (``documents`` None), or the one of a resumed build cut back
        to its first ``documents`` lines."""
        self = cls(build_dir)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if documents is None:
            self.path.write_bytes(b"")
            return self
        keep = 0
        if self.path.is_file():
            with open(self.path, "rb") as f:
                for i, line in enumerate(f):
                    if i == documents:
                        break
                    meta = json.loads(line)
                    self.check([f"row {i}"], [meta])
                    keep += len(line)
                    self.rows += 1
        if self.rows != documents:
            raise CorruptIndexError(
                f"{self.path}: expected metadata for the {documents} committed documents during "
                f"resume, got {self.rows}"
            )
        with writing(self.path), open(self.path, "r+b") as f:
            f.truncate(keep)  # the build's own staging file, never a committed one
            os.fsync(f.fileno())
        return self

    def check(self, ids: Sequence[str], metadata: Sequence[dict[str, Any] | None]) -> None:
        """Raise :class:`InvalidInputError` when a field's type differs from an earlier one."""
        for doc_id, meta in zip(ids, metadata, strict=True):
            for key, value in (meta or {}).items():
                kind = _value_type(value, key)
                first = self._types.setdefault(key, (kind, doc_id))
                if first[0] != kind:
                    raise InvalidInputError(
                        f"document {doc_id!r}: metadata field {key!r}: expected {first[0]} (as in "
                        f"document {first[1]!r}), got {kind} {value!r}"
                    )

    def add(self, ids: Sequence[str], metadata: Sequence[dict[str, Any] | None]) -> None:
        """Check, append and fsync one batch's metadata (``None`` = no fields)."""
        self.check(ids, metadata)
        lines = [b"null\n" if m is None else json.dumps(m, ensure_ascii=False).encode() + b"\n"
                 for m in metadata]
        with writing(self.path), open(self.path, "ab") as f:
            f.write(b"".join(lines))
            f.flush()
            os.fsync(f.fileno())
        self.rows += len(lines)

    def add_documents(self, docs: Sequence[Any]) -> None:
        """:meth:`add` of ``Document`` objects (``.id``, ``.metadata``)."""
        self.add([d.id for d in docs], [d.metadata for d in docs])


def _read_staging(path: Path) -> Any:
    with open(path, "rb") as f:
        for line in f:
            yield json.loads(line)


class _Column:
    """Sparse (row, value) pairs of one field, densified at the end."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.rows = array("q")
        self.values: list[Any] = []

    def add(self, row: int, value: Any) -> None:
        self.rows.append(row)
        self.values.append(value)


def _dictionary(values: list[str]) -> tuple[np.ndarray, list[str]]:
    """int32 codes of ``values`` and the distinct values in first-seen order."""
    vocab: dict[str, int] = {}
    codes = np.fromiter((vocab.setdefault(v, len(vocab)) for v in values), np.int32, len(values))
    return codes, list(vocab)


def _to_arrow(col: _Column, n: int) -> Any:
    import pyarrow as pa

    rows = np.frombuffer(col.rows, dtype=np.int64) if len(col.rows) else np.zeros(0, np.int64)
    present = np.zeros(n, dtype=bool)
    present[rows] = True
    if col.kind == "string":
        codes, vocab = _dictionary(col.values)
        dense = np.zeros(n, dtype=np.int32)
        dense[rows] = codes
        return pa.DictionaryArray.from_arrays(
            pa.array(dense, mask=~present), pa.array(vocab, type=pa.string()))
    if col.kind == "number":
        is_int = all(isinstance(v, int) for v in col.values)
        dtype = np.int64 if is_int else np.float64
        dense_n = np.zeros(n, dtype=dtype)
        dense_n[rows] = np.asarray(col.values, dtype=dtype)
        return pa.array(dense_n, mask=~present)
    if col.kind == "boolean":
        dense_b = np.zeros(n, dtype=bool)
        dense_b[rows] = np.asarray(col.values, dtype=bool)
        return pa.array(dense_b, mask=~present)
    lengths = np.zeros(n, dtype=np.int64)
    lengths[rows] = [len(v) for v in col.values]
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    codes, vocab = _dictionary([s for v in col.values for s in v])
    flat = pa.DictionaryArray.from_arrays(pa.array(codes, type=pa.int32()),
                                          pa.array(vocab, type=pa.string()))
    return pa.ListArray.from_arrays(pa.array(offsets), flat, mask=pa.array(~present))


def write_metadata_file(staging: Path, seg_dir: Path, num_documents: int) -> dict[str, str] | None:
    """Turn a build's staging file into ``seg_dir/metadata.arrow`` (fsynced).

    Returns the field types, or ``None`` (and writes nothing) when no document has a
    field. Memory: the values of every field, once (a column at a time in Arrow).

    Raises
    ------
    CorruptIndexError
        The staging file holds another number of documents than the segment.
    """
    import pyarrow as pa

    columns: dict[str, _Column] = {}
    row = -1
    for row, meta in enumerate(_read_staging(Path(staging))):
        for key, value in (meta or {}).items():
            col = columns.get(key)
            if col is None:
                col = columns[key] = _Column(_value_type(value, key))
            col.add(row, value)
    if row + 1 != num_documents:
        raise CorruptIndexError(
            f"{staging}: expected metadata for {num_documents} documents, got {row + 1}"
        )
    if not columns:
        return None
    names = sorted(columns)
    types = {k: columns[k].kind for k in names}
    arrays = [_to_arrow(columns[k], num_documents) for k in names]
    columns.clear()
    schema = pa.schema(
        [pa.field(k, a.type) for k, a in zip(names, arrays, strict=True)],
        metadata={"mvr_metadata": json.dumps({"version": METADATA_VERSION, "types": types})},
    )
    table = pa.Table.from_arrays(arrays, schema=schema)
    path = Path(seg_dir) / METADATA_FILE
    with writing(path), pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, schema) as w:
        w.write_table(table)  # pyarrow's OSError names no file: writing() does
    fsync_file(path)
    return types


def read_metadata_rows(seg_dir: Path, rows: Sequence[int]) -> list[dict[str, Any] | None]:
    """Metadata of some rows of a segment as dicts (compaction; not for search paths)."""
    import pyarrow as pa

    path = Path(seg_dir) / METADATA_FILE
    if not path.is_file():
        return [None] * len(rows)
    with pa.OSFile(str(path), "rb") as source:
        table = pa.ipc.open_file(source).read_all().take(pa.array(np.asarray(rows, np.int64)))
        out: list[dict[str, Any] | None] = []
        for rec in table.to_pylist():
            meta = {k: v for k, v in rec.items() if v is not None}
            out.append(meta or None)
    return out


def stage_live_metadata(
    session: Any, root: Path, segments: Sequence[Mapping[str, Any]],
    tombstones: Mapping[str, Sequence[int]], batch_size: int = 4096,
) -> None:
    """Compaction: stage the metadata of every live document of ``segments`` into
    ``session.metadata``, in the order compaction writes them (segment after segment,
    rows ascending, tombstoned rows skipped)."""
    for ids, metas in live_metadata_batches(root, segments, tombstones, batch_size):
        session.metadata.add(ids, metas)


def live_metadata_batches(
    root: Path, segments: Sequence[Mapping[str, Any]], tombstones: Mapping[str, Sequence[int]],
    batch_size: int,
) -> Any:
    """``(ids, metadata)`` of the live documents of ``segments``, ``batch_size`` rows (less
    the tombstoned ones) at a time: lists of ids and of dicts / None."""
    import pyarrow as pa

    from indexing._segment import read_ids
    from mvr.format import SEGMENTS_DIR

    for seg in segments:
        n = int(seg["documents"])
        seg_ids = read_ids(Path(root) / SEGMENTS_DIR / seg["name"])
        dead = np.zeros(n, dtype=bool)
        dead[np.asarray(tombstones.get(seg["name"], []), dtype=np.int64)] = True
        path = Path(root) / SEGMENTS_DIR / seg["name"] / METADATA_FILE
        table = None
        if path.is_file():
            with pa.OSFile(str(path), "rb") as source:
                table = pa.ipc.open_file(source).read_all()
        for lo in range(0, n, batch_size):
            rows = [r for r in range(lo, min(lo + batch_size, n)) if not dead[r]]
            if not rows:
                continue
            ids = [seg_ids[r] for r in rows]
            if table is None:
                yield ids, [None] * len(rows)
                continue
            recs = table.take(pa.array(rows, type=pa.int64())).to_pylist()
            yield ids, [({k: v for k, v in r.items() if v is not None} or None) for r in recs]
