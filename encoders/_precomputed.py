"""Precomputed token vectors: the on-disk format, its writer, and an encoder that looks them up.

Format ``mvr-precomputed``, version 1. A *table* holds ``n`` items (documents or queries):

=========  ==========================  ===================================================
array      shape / dtype               meaning
=========  ==========================  ===================================================
vectors    (total_tokens, dim)         token vectors of every item, item after item;
           float16 or float32          L2-normalised rows
offsets    (n + 1,) int64              item ``i`` is ``vectors[offsets[i]:offsets[i + 1]]``;
                                       ``offsets[0] == 0``, non-decreasing,
                                       ``offsets[-1] == total_tokens``
ids        (n,) str                    unique item ids
texts      (n,) str, optional          the texts that were encoded
=========  ==========================  ===================================================

plus a JSON object ``meta``: ``{"format": "mvr-precomputed", "format_version": 1,
"dim": d, "count": n, "dtype": "float16", "identity": {...} or null}``, where
``identity`` is the identity of the encoder that produced the vectors (so an index
built from them accepts queries encoded live by that encoder).

Containers (all three are read; :func:`save_precomputed` writes the first two):

* **zarr v3 group** (a directory with ``zarr.json``, conventionally ``*.zarr``): arrays
  ``vectors``, ``offsets``, ``ids`` [, ``texts``]; ``meta`` in the group attribute
  ``"mvr_precomputed"``. Read lazily (chunks of 16,384 token rows).
* **.npz** file: arrays ``vectors``, ``offsets``, ``ids`` [, ``texts``] as numpy unicode
  arrays (no pickle), ``meta`` a 0-d unicode array holding the JSON. Read into memory.
* **.npy directory**: ``vectors.npy``, ``offsets.npy``, ``ids.npy`` [, ``texts.npy``]
  [, ``meta.json``]; memory-mapped. The easiest to produce from another tool.

A **pair** is a directory holding a ``documents`` and a ``queries`` table
(``documents.zarr`` / ``documents.npz`` / ``documents/`` and the same for
``queries``): ``encode_documents`` looks up the first, ``encode_queries`` the second.
A single table serves both methods.

``encode_*(texts)`` treats each string as an item id; when the table stores texts, a
string that is not an id is looked up as an exact text. Unknown strings raise
:class:`mvr.errors.DocumentNotFoundError` listing them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from encoders._inputs import check_texts
from mvr._multivectors import MultiVectors, as_multivectors
from mvr.errors import (
    ConfigError,
    DimensionMismatchError,
    DocumentNotFoundError,
    FormatVersionError,
    InvalidInputError,
    InvalidVectorsError,
    ModelFileNotFoundError,
)

__all__ = [
    "PrecomputedEncoder",
    "PrecomputedTable",
    "save_precomputed",
    "read_precomputed",
    "is_precomputed",
    "FORMAT_NAME",
    "FORMAT_VERSION",
]

FORMAT_NAME = "mvr-precomputed"
FORMAT_VERSION = 1
_ATTR = "mvr_precomputed"
_CHUNK_ROWS = 16384
_SIDES = ("documents", "queries")


# ---------------------------------------------------------------------------------- writing
def save_precomputed(
    path: str | os.PathLike[str],
    ids: Sequence[str],
    vectors: Any,
    texts: Sequence[str] | None = None,
    *,
    identity: dict[str, Any] | None = None,
    dtype: Any = None,
    format: str | None = None,
) -> Path:
    """Write a precomputed-vectors table (see the module docstring for the format).

    Parameters
    ----------
    path : path
        ``*.npz`` writes an npz file; anything else a zarr v3 group (directory).
        An existing table at ``path`` is replaced (written aside, then swapped in).
    ids : sequence of str
        Shape: (n,). Unique.
    vectors : MultiVectors or sequence of arrays
        n items of shape (t_i, dim).
    texts : sequence of str, optional
        Shape: (n,). The encoded texts, for lookup by text.
    identity : dict, optional
        Identity of the encoder that produced the vectors (``encoder.identity``).
    dtype : numpy dtype, optional
        Storage dtype, float16 or float32 (default: the vectors' dtype).
    format : {"zarr", "npz"}, optional
        Overrides the choice by suffix.

    Returns
    -------
    Path
        The written path.
    """
    path = Path(path)
    mv = as_multivectors(vectors, name="vectors")
    ids_list = _check_strings(ids, "ids")
    if len(ids_list) != len(mv):
        raise DimensionMismatchError(f"expected one id per item: {len(mv)} items, {len(ids_list)} ids")
    _check_unique(ids_list)
    texts_list = None if texts is None else _check_strings(texts, "texts")
    if texts_list is not None and len(texts_list) != len(mv):
        raise DimensionMismatchError(f"expected one text per item: {len(mv)} items, {len(texts_list)} texts")
    dtype = np.dtype(dtype if dtype is not None else mv.dtype)
    if dtype not in (np.dtype(np.float16), np.dtype(np.float32)):
        raise ConfigError(f"dtype: expected float16 or float32, got {dtype}")
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "dim": mv.dim,
        "count": len(mv),
        "dtype": dtype.name,
        "identity": identity,
    }
    arrays = {
        "vectors": mv.vectors.astype(dtype, copy=False),
        "offsets": mv.offsets.astype(np.int64, copy=False),
        "ids": np.asarray(ids_list, dtype=np.str_),
    }
    if texts_list is not None:
        arrays["texts"] = np.asarray(texts_list, dtype=np.str_)
    fmt = format or ("npz" if path.suffix == ".npz" else "zarr")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    _remove(tmp)
    if fmt == "npz":
        with open(tmp, "wb") as f:
            np.savez(f, meta=np.asarray(json.dumps(meta)), **arrays)
    elif fmt == "zarr":
        _write_zarr(tmp, arrays, meta)
    else:
        raise ConfigError(f"format: expected 'zarr' or 'npz', got {format!r}")
    for attempt in range(3):  # another writer may swap in its table between our two steps
        _remove(path)
        try:
            os.replace(tmp, path)
            break
        except OSError:
            if attempt == 2:
                raise
    return path


def _write_zarr(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    import zarr

    group = zarr.open_group(str(path), mode="w")
    for name, arr in arrays.items():
        if name == "vectors":
            chunks: tuple[int, ...] = (max(1, min(_CHUNK_ROWS, arr.shape[0])), arr.shape[1])
        else:
            chunks = (max(1, arr.shape[0]),)
        dtype: Any = str if arr.dtype.kind == "U" else arr.dtype
        z = group.create_array(name, shape=arr.shape, dtype=dtype, chunks=chunks, compressors=None)
        if arr.size:
            z[...] = arr
    group.attrs[_ATTR] = meta


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _check_strings(values: Any, what: str) -> list[str]:
    if isinstance(values, (str, bytes)):
        raise InvalidInputError(f"{what}: expected a sequence of strings, got a single string")
    out = list(values)
    for i, v in enumerate(out):
        if not isinstance(v, (str, np.str_)):
            raise InvalidInputError(f"{what}: item {i}: expected str, got {type(v).__name__}")
    return [str(v) for v in out]


def _check_unique(ids: list[str]) -> None:
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dup = next(i for i in ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]
        raise InvalidInputError(f"ids: expected unique ids, {dup!r} occurs more than once")


# ---------------------------------------------------------------------------------- reading
class PrecomputedTable:
    """One precomputed table opened for lookup (see the module docstring).

    Attributes
    ----------
    ids : list of str
        Shape: (n,).
    offsets : np.ndarray
        Shape: (n + 1,), int64.
    meta : dict
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        arrays, meta = _open_arrays(self.path)
        _check_meta(meta, self.path)
        self.meta = meta
        self._vectors = arrays["vectors"]
        self.offsets = np.asarray(arrays["offsets"][...], dtype=np.int64)
        self.ids = [str(x) for x in np.asarray(arrays["ids"][...]).tolist()]
        self._texts_arr = arrays.get("texts")
        self._full: np.ndarray | None = None
        self._validate()
        self._row_of = {i: r for r, i in enumerate(self.ids)}
        self._row_of_text: dict[str, int] | None = None

    def _validate(self) -> None:
        n, shape = len(self.ids), tuple(self._vectors.shape)
        if len(shape) != 2 or shape[1] != self.meta["dim"]:
            raise InvalidVectorsError(
                f"{self.path}: expected vectors of shape (total, {self.meta['dim']}), got {shape}"
            )
        if self.offsets.shape != (n + 1,) or self.offsets[0] != 0 or self.offsets[-1] != shape[0]:
            raise InvalidVectorsError(
                f"{self.path}: expected offsets of shape ({n + 1},) from 0 to {shape[0]}, got "
                f"shape {self.offsets.shape}"
                + (f" from {self.offsets[0]} to {self.offsets[-1]}" if self.offsets.size else "")
            )
        if np.any(np.diff(self.offsets) < 0):
            raise InvalidVectorsError(f"{self.path}: offsets must be non-decreasing")
        if len(set(self.ids)) != n:
            raise InvalidVectorsError(f"{self.path}: ids are not unique")

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    @property
    def texts(self) -> list[str] | None:
        if self._texts_arr is None:
            return None
        return [str(x) for x in np.asarray(self._texts_arr[...]).tolist()]

    def __len__(self) -> int:
        return len(self.ids)

    def rows_of(self, keys: Sequence[str]) -> np.ndarray:
        """Row of each key (an id, else an exact stored text). Shape: (len(keys),) int64."""
        rows = np.empty(len(keys), dtype=np.int64)
        missing = []
        for j, key in enumerate(keys):
            r = self._row_of.get(key)
            if r is None:
                r = self._text_rows().get(key)
            if r is None:
                missing.append(key)
                continue
            rows[j] = r
        if missing:
            shown = ", ".join(repr(m[:60]) for m in missing[:5])
            raise DocumentNotFoundError(
                f"{len(missing)} of {len(keys)} keys are neither ids nor stored texts of "
                f"{self.path}: {shown}{' ...' if len(missing) > 5 else ''}"
            )
        return rows

    def _text_rows(self) -> dict[str, int]:
        if self._row_of_text is None:
            texts = self.texts or []
            self._row_of_text = {}
            for r, t in enumerate(texts):
                self._row_of_text.setdefault(t, r)
        return self._row_of_text

    def get(self, rows: np.ndarray) -> MultiVectors:
        """Token vectors of ``rows`` (shape (m,), int64) in that order, in the stored dtype."""
        rows = np.asarray(rows, dtype=np.int64)
        starts, ends = self.offsets[rows], self.offsets[rows + 1]
        lengths = ends - starts
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        if len(rows) == 0:
            return MultiVectors.empty(self.dim, self._vectors.dtype)
        if self._full is None and int(offsets[-1]) * 4 < int(self.offsets[-1]):
            parts = [np.asarray(self._vectors[s:e]) for s, e in zip(starts, ends, strict=True)]
            return MultiVectors(np.concatenate(parts, axis=0), offsets, validate=False)
        full = self.all_vectors()
        idx = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
        return MultiVectors(full[idx], offsets, validate=False)

    def all_vectors(self) -> np.ndarray:
        """The whole ``vectors`` array (read once, then kept). Shape: (total_tokens, dim)."""
        if self._full is None:
            self._full = np.asarray(self._vectors[...])
        return self._full

    def all(self) -> MultiVectors:
        """Every item, in stored order."""
        return MultiVectors(self.all_vectors(), self.offsets, validate=False)


def _open_arrays(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    if path.is_file() and path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files if k != "meta"}
            meta = json.loads(str(z["meta"])) if "meta" in z.files else None
        return arrays, _meta_or_infer(meta, arrays, path)
    if (path / "zarr.json").is_file():
        import zarr

        group = zarr.open_group(str(path), mode="r")
        arrays = {k: group[k] for k in ("vectors", "offsets", "ids", "texts") if k in group}
        _require(arrays, path)
        return arrays, _meta_or_infer(group.attrs.get(_ATTR), arrays, path)
    if (path / "vectors.npy").is_file():
        arrays = {}
        for k in ("vectors", "offsets", "ids", "texts"):
            f = path / f"{k}.npy"
            if f.is_file():
                arrays[k] = np.load(f, mmap_mode="r" if k == "vectors" else None, allow_pickle=False)
        meta = json.loads((path / "meta.json").read_text()) if (path / "meta.json").is_file() else None
        return arrays, _meta_or_infer(meta, arrays, path)
    raise ModelFileNotFoundError(
        f"{path}: expected a precomputed-vectors table (a .npz file, a zarr group with "
        "zarr.json, or a directory with vectors.npy), found none"
    )


def _require(arrays: dict[str, Any], path: Path) -> None:
    for k in ("vectors", "offsets", "ids"):
        if k not in arrays:
            raise ModelFileNotFoundError(
                f"precomputed table {path} is incomplete: expected array {k!r}, not found"
            )


def _meta_or_infer(meta: Any, arrays: dict[str, Any], path: Path) -> dict[str, Any]:
    _require(arrays, path)
    vec = arrays["vectors"]
    if meta is None:  # written by another tool: infer what the arrays say
        meta = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "identity": None}
        meta.update(dim=int(vec.shape[1]) if len(vec.shape) == 2 else -1)
        meta.update(count=int(arrays["ids"].shape[0]), dtype=str(vec.dtype))
    return dict(meta)


def _check_meta(meta: dict[str, Any], path: Path) -> None:
    if meta.get("format") != FORMAT_NAME:
        raise FormatVersionError(f"{path}: expected format {FORMAT_NAME!r}, got {meta.get('format')!r}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise FormatVersionError(
            f"{path}: expected {FORMAT_NAME} format_version {FORMAT_VERSION}, got "
            f"{meta.get('format_version')!r}"
        )


def read_precomputed(path: str | os.PathLike[str]) -> tuple[list[str], MultiVectors, list[str] | None, dict[str, Any]]:
    """Read a whole table: ``(ids, vectors, texts or None, meta)``."""
    table = PrecomputedTable(path)
    return table.ids, table.all(), table.texts, table.meta


def _table_path(directory: Path, side: str) -> Path | None:
    for candidate in (directory / f"{side}.zarr", directory / f"{side}.npz", directory / side):
        if candidate.exists():
            return candidate
    return None


def is_precomputed(path: Path) -> bool:
    """Whether ``path`` looks like a precomputed table or pair (not a model directory)."""
    if path.is_file():
        return path.suffix == ".npz"
    if (path / "zarr.json").is_file() or (path / "vectors.npy").is_file():
        return True
    return any(_table_path(path, s) is not None for s in _SIDES) and not (path / "config.json").exists()


# ---------------------------------------------------------------------------------- encoder
class PrecomputedEncoder:
    """An :class:`mvr.Encoder` backed by precomputed vectors: ``encode_*`` looks items up.

    Parameters
    ----------
    path : path
        A table (both methods use it) or a pair directory (``documents`` + ``queries``).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.source = str(self.path)
        docs = _table_path(self.path, "documents") if self.path.is_dir() else None
        queries = _table_path(self.path, "queries") if self.path.is_dir() else None
        if docs is None and queries is None:
            single = PrecomputedTable(self.path)
            self._tables: dict[str, PrecomputedTable | None] = {"documents": single, "queries": single}
        else:
            self._tables = {
                "documents": PrecomputedTable(docs) if docs else None,
                "queries": PrecomputedTable(queries) if queries else None,
            }
        present = [t for t in self._tables.values() if t is not None]
        dims = {t.dim for t in present}
        if len(dims) != 1:
            raise DimensionMismatchError(f"{self.path}: documents and queries differ in dim: {sorted(dims)}")
        idents = [json.dumps(t.meta.get("identity"), sort_keys=True) for t in present]
        if len(set(idents)) != 1:
            raise ConfigError(f"{self.path}: documents and queries were written by different encoders")
        self._dim = dims.pop()
        self._identity = present[0].meta.get("identity") or self._content_identity(present)

    def _content_identity(self, tables: list[PrecomputedTable]) -> dict[str, Any]:
        h = hashlib.sha256()
        for t in dict.fromkeys(tables):  # a single table may serve both sides
            h.update("\n".join(t.ids).encode())
            h.update(t.offsets.tobytes())
        return {
            "name": "precomputed",
            "config": {"dim": self._dim, "layout": "precomputed"},
            "weights_sha256": h.hexdigest(),
        }

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def identity(self) -> dict[str, Any]:
        return json.loads(json.dumps(self._identity))

    def table(self, side: str) -> PrecomputedTable:
        """The ``"documents"`` or ``"queries"`` table."""
        if side not in _SIDES:
            raise ConfigError(f"side: expected one of {_SIDES}, got {side!r}")
        t = self._tables[side]
        if t is None:
            raise ModelFileNotFoundError(f"{self.path}: no {side} table (expected {side}.zarr, {side}.npz or {side}/)")
        return t

    def encode_queries(self, texts: Sequence[str]) -> MultiVectors:
        """Stored vectors of the queries with these ids (or stored texts)."""
        return self._lookup(texts, "queries")

    def encode_documents(self, texts: Sequence[str]) -> MultiVectors:
        """Stored vectors of the documents with these ids (or stored texts)."""
        return self._lookup(texts, "documents")

    def _lookup(self, texts: Sequence[str], side: str) -> MultiVectors:
        keys = check_texts(texts, side)
        table = self.table(side)
        if not keys:
            return MultiVectors.empty(self.dim, np.float32)
        return table.get(table.rows_of(keys))

    def __repr__(self) -> str:
        return f"PrecomputedEncoder(path={str(self.path)!r}, dim={self.dim})"
