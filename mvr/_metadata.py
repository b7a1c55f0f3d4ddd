"""Read side of the per-segment metadata columns (``segments/<name>/metadata.arrow``).

The Arrow IPC file is read into RAM; a filter reads a field as numpy arrays (codes,
values, validity, list offsets) built once per field and segment and then cached, so
filtering 700k documents never creates a Python object per document.

Only files are read here (no searcher, no encoder): ``mvr info`` summarises an index's
metadata with :func:`read_metadata_summary`, and :mod:`serving._metadata` keeps one
:class:`IndexMetadata` per open searcher for filters.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mvr.errors import CorruptIndexError, FormatVersionError
from mvr.format import FIELD_TYPES, METADATA_FILE, METADATA_VERSION, SEGMENTS_DIR

__all__ = [
    "FieldColumn",
    "SegmentMetadata",
    "IndexMetadata",
    "HeldPaths",
    "summarise",
    "read_metadata_summary",
]


class HeldPaths(Protocol):
    """Descriptors held open since a snapshot was opened (``serving._held_files.HeldFiles``)."""

    def paths(self, rels: Iterable[str]) -> dict[str, Path]: ...

    def release(self, rels: Iterable[str]) -> None: ...


@dataclass(frozen=True, kw_only=True)
class FieldColumn:
    """One field of one segment, as numpy.

    Attributes
    ----------
    kind : str
        ``"string"``, ``"number"``, ``"boolean"`` or ``"string_list"``.
    present : np.ndarray
        Shape: (n,) bool, the document has the field.
    values : np.ndarray
        string: (n,) int32 codes (-1 absent); number: (n,) int64 / float64; boolean:
        (n,) bool; string_list: (total,) int32 codes of the flattened lists.
    offsets : np.ndarray or None
        string_list only. Shape: (n + 1,) int64; row i's codes are
        ``values[offsets[i]:offsets[i+1]]``.
    dictionary : Any
        string / string_list: the distinct values (a ``pyarrow.StringArray``; code = position).
    """

    kind: str
    present: np.ndarray
    values: np.ndarray
    offsets: np.ndarray | None = None
    dictionary: Any = None

    def codes_of(self, strings: list[str]) -> np.ndarray:
        """Codes of ``strings`` in this column's dictionary (absent ones dropped)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        idx = pc.index_in(pa.array(strings, type=pa.string()), value_set=self.dictionary)
        return np.asarray(idx.drop_null().to_numpy(zero_copy_only=False), dtype=np.int32)


class SegmentMetadata:
    """The metadata columns of one segment (``num_documents`` rows)."""

    def __init__(self, path: Path | None, num_documents: int, name: Path | None = None) -> None:
        """``path``: where to read the file; ``name``: the file in error messages (its
        path in the index when ``path`` is a held descriptor's)."""
        self.num_documents = num_documents
        self.types: dict[str, str] = {}
        self._table: Any = None
        self._columns: dict[str, FieldColumn] = {}
        self._lock = threading.Lock()
        if path is None or not path.is_file():
            return
        import pyarrow as pa

        read, path = path, path if name is None else name
        try:
            # read into RAM, not memory-mapped: a failing disk then raises an OSError here
            # instead of a SIGBUS at some later filter (the columns are small)
            with pa.OSFile(str(read), "rb") as source:
                self._table = pa.ipc.open_file(source).read_all()
        except pa.ArrowInvalid as e:
            raise CorruptIndexError(f"{path}: expected an Arrow IPC file, got {e}") from e
        raw = (self._table.schema.metadata or {}).get(b"mvr_metadata")
        info = json.loads(raw) if raw else None
        if not info or info.get("version") != METADATA_VERSION:
            raise FormatVersionError(
                f"{path}: expected mvr metadata version {METADATA_VERSION}, got "
                f"{None if not info else info.get('version')!r}"
            )
        if self._table.num_rows != num_documents:
            raise CorruptIndexError(
                f"{path}: expected {num_documents} rows, got {self._table.num_rows}"
            )
        self.types = dict(info["types"])
        bad = {k: t for k, t in self.types.items() if t not in FIELD_TYPES}
        if bad:
            raise CorruptIndexError(f"{path}: expected field types in {FIELD_TYPES}, got {bad}")

    def column(self, name: str) -> FieldColumn | None:
        """The field's arrays (None when no document of the segment has the field)."""
        if name not in self.types:
            return None
        with self._lock:
            col = self._columns.get(name)
            if col is None:
                col = _column(self._table.column(name), self.types[name])
                self._columns[name] = col
            return col


def _column(chunked: Any, kind: str) -> FieldColumn:
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = chunked.combine_chunks() if chunked.num_chunks != 1 else chunked.chunk(0)
    present = np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    if kind == "string":
        if not isinstance(arr, pa.DictionaryArray):
            arr = arr.dictionary_encode()
        codes = pc.fill_null(arr.indices, -1).to_numpy(zero_copy_only=False).astype(np.int32)
        return FieldColumn(kind=kind, present=present, values=codes, dictionary=arr.dictionary)
    if kind == "string_list":
        flat = arr.flatten()  # values of the non-null lists, in row order
        if not isinstance(flat, pa.DictionaryArray):
            flat = flat.dictionary_encode()
        lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False)
        offsets = np.zeros(len(arr) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        codes = flat.indices.to_numpy(zero_copy_only=False).astype(np.int32)
        return FieldColumn(kind=kind, present=present, values=codes, offsets=offsets,
                           dictionary=flat.dictionary)
    fill = False if kind == "boolean" else 0
    values = pc.fill_null(arr, fill).to_numpy(zero_copy_only=False)
    return FieldColumn(kind=kind, present=present, values=np.asarray(values))


class IndexMetadata:
    """Metadata of every segment of a searcher's snapshot, rows in the searcher's order."""

    def __init__(self, root: Path, segments: list[dict[str, Any]], files: dict[str, Any],
                 held: HeldPaths | None = None) -> None:
        """``held``: the descriptors the searcher opened at open time, read instead of the
        paths (a compaction since may have unlinked them); released once read."""
        from mvr._manifest import verify_files

        self.segments: list[SegmentMetadata] = []
        starts = [0]
        # read when first used, and hashed then
        names = sorted({f"{SEGMENTS_DIR}/{seg['name']}/{METADATA_FILE}" for seg in segments}
                       & set(files))
        at = held.paths(names) if held is not None else {rel: root / rel for rel in names}
        verify_files(root, {"files": {k: files[k] for k in names}}, paths=at)
        for seg in segments:
            rel = f"{SEGMENTS_DIR}/{seg['name']}/{METADATA_FILE}"
            path = at.get(rel)
            self.segments.append(SegmentMetadata(path, int(seg["documents"]), root / rel))
            starts.append(starts[-1] + int(seg["documents"]))
        self.starts = np.asarray(starts, dtype=np.int64)
        if held is not None:
            held.release(names)

    @property
    def num_documents(self) -> int:
        return int(self.starts[-1])

    def field_types(self) -> dict[str, list[str]]:
        """Field -> the types it has across segments (one, unless segments disagree)."""
        out: dict[str, list[str]] = {}
        for seg in self.segments:
            for name, kind in seg.types.items():
                if kind not in out.setdefault(name, []):
                    out[name].append(kind)
        return dict(sorted(out.items()))


def summarise(meta: IndexMetadata, live: np.ndarray) -> dict[str, Any]:
    """What the index's metadata holds: per field its type(s), how many live documents
    have it, and distinct values (strings) or min / max (numbers).

    Parameters
    ----------
    meta : IndexMetadata
        The snapshot's metadata.
    live : np.ndarray
        Shape: (meta.num_documents,) bool, the documents not deleted.

    Returns
    -------
    dict
        ``{"documents": live documents, "fields": {name: {"type": str, "documents": int,
        ...}}}``; ``"type"`` is ``"a|b"`` when segments disagree.
    """
    live = np.asarray(live, dtype=bool)
    if live.shape != (meta.num_documents,):
        raise ValueError(f"live: expected shape ({meta.num_documents},), got {live.shape}")
    fields: dict[str, Any] = {}
    for name, kinds in meta.field_types().items():
        fields[name] = _summarise_field(meta, name, kinds, live)
    return {"documents": int(live.sum()), "fields": fields}


def _summarise_field(meta: IndexMetadata, name: str, kinds: list[str],
                     live: np.ndarray) -> dict[str, Any]:
    count, lo, hi = 0, None, None
    distinct: set[str] = set()
    for i, seg in enumerate(meta.segments):
        col = seg.column(name)
        if col is None:
            continue
        has = col.present & live[meta.starts[i] : meta.starts[i + 1]]
        count += int(has.sum())
        if col.kind == "number" and has.any():
            v = col.values[has]
            lo = v.min() if lo is None else min(lo, v.min())
            hi = v.max() if hi is None else max(hi, v.max())
        elif col.kind in ("string", "string_list"):
            if col.kind == "string":
                used = np.unique(col.values[has])
            else:
                assert col.offsets is not None  # string_list columns always have offsets
                used = np.unique(col.values[np.repeat(has, np.diff(col.offsets))])
            distinct.update(col.dictionary.take(used).to_pylist())
    info: dict[str, Any] = {"type": "|".join(kinds), "documents": count}
    if lo is not None and hi is not None:
        info["min"], info["max"] = lo.item(), hi.item()
    if any(k in ("string", "string_list") for k in kinds):
        info["distinct"] = len(distinct)
    return info


def read_metadata_summary(path: str | Path, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """:func:`summarise` of the index at ``path`` (its committed manifest unless one is
    given), from its files alone: metadata columns and tombstones, no texts or vectors.

    Raises
    ------
    CorruptIndexError
        A metadata file does not match the manifest (size, SHA-256, rows, types).
    """
    from mvr._json_files import read_tombstones
    from mvr._manifest import read_manifest

    root = Path(path)
    m = read_manifest(root) if manifest is None else manifest
    segments = list(m["segments"])
    meta = IndexMetadata(root, segments, m["files"])
    live = np.ones(meta.num_documents, dtype=bool)
    if m.get("tombstones") is not None:
        docs = {s["name"]: int(s["documents"]) for s in segments}
        index = {s["name"]: i for i, s in enumerate(segments)}
        for name, rows in read_tombstones(root / m["tombstones"], docs).items():
            live[meta.starts[index[name]] + np.asarray(rows, dtype=np.int64)] = False
    return summarise(meta, live)
