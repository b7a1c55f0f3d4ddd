"""One segment of an index: the append-only crash-safe writer of its files.

A segment directory ``segments/<name>/`` holds (see :mod:`mvr.format`)::

    (the files of :mod:`mvr._segments`, the format contract; readers live there)

The writer appends one batch at a time and commits it with :meth:`SegmentWriter.commit`
(fsync of every file, then the caller records the sizes in its progress file).
:meth:`SegmentWriter.truncate_to` rolls every file back to a committed state.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mvr._checksum import CHECKSUMS_FILE, record_hashes
from mvr._durable import fsync_dir, fsync_file, writing
from mvr._multivectors import MultiVectors
from mvr._segments import (
    ACODES_FILE,
    APPEND_FILES,
    CIDS_FILE,
    FDE_DIR,
    FIRST_STAGE_FILE,
    IDS_FILE,
    LENGTHS_FILE,
    TEXT_LENGTHS_FILE,
    TEXTS_FILE,
    TextReader,
    open_fdes,
    read_cids,
    read_ids,
    read_lengths,
    record_offsets,
    segment_files,
)
from mvr.errors import ConfigError, CorruptIndexError
from mvr.format import CODED_DTYPES, TOKENS_FILE, aligned_offsets, record_nbytes

__all__ = [
    "IDS_FILE",
    "LENGTHS_FILE",
    "FDE_DIR",
    "TEXTS_FILE",
    "TEXT_LENGTHS_FILE",
    "FIRST_STAGE_FILE",
    "APPEND_FILES",
    "CIDS_FILE",
    "SegmentWriter",
    "segment_files",
    "read_cids",
    "read_ids",
    "read_lengths",
    "open_fdes",
    "record_offsets",
    "TextReader",
]

_GROW_CHUNKS = 32  # the FDE array grows this many chunks ahead of the appended rows


def _pack_records(
    vectors: np.ndarray, lengths: np.ndarray, dim: int, dtype: str, alignment: int, start: int
) -> bytes:
    """The bytes :func:`mvr.format.encode_records` gives, each record placed at its aligned
    offset from ``start`` and zero-padded (also at the end, so the next batch starts
    aligned); one vectorised encoding of the whole batch. Shape of ``vectors``: (total, dim)."""
    nbytes = np.asarray(record_nbytes(lengths, dim, dtype), np.int64)
    offs = aligned_offsets(nbytes, alignment, start) - start
    if dtype == "float16":
        flat = np.ascontiguousarray(vectors, dtype="<f2").reshape(-1).view(np.uint8)
        if offs[0] == 0 and np.array_equal(offs[1:-1], np.cumsum(nbytes)[:-1]):
            pad = int(offs[-1] - nbytes.sum())  # records back to back: one copy
            return flat.tobytes() + b"\0" * pad
        parts = [flat]
    else:
        block = np.asarray(vectors, dtype=np.float32)
        amax = np.abs(block).max(axis=1) if block.size else np.zeros(len(block), np.float32)
        scale = np.where(amax > 0, amax / 127.0, 1.0).astype("<f4")
        q = np.clip(np.rint(block / scale[:, None]), -127, 127).astype(np.int8)
        parts = [q.reshape(-1).view(np.uint8), scale.view(np.uint8)]
    out = np.zeros(int(offs[-1]), dtype=np.uint8)
    tok = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=tok[1:])
    row_bytes = [dim * 2] if dtype == "float16" else [dim, 4]
    for i in range(len(lengths)):
        pos = int(offs[i])
        for part, rb in zip(parts, row_bytes, strict=True):
            a, b = int(tok[i]) * rb, int(tok[i + 1]) * rb
            out[pos : pos + b - a] = part[a:b]
            pos += b - a
    return out.tobytes()


def _pack_codes(codes: np.ndarray, lengths: np.ndarray, alignment: int, start: int) -> bytes:
    """Residual codes (shape (total, code_size) uint8) as records of ``lengths`` tokens at
    their aligned offsets from ``start`` (zero padding, also at the end)."""
    flat = np.ascontiguousarray(codes, dtype=np.uint8)
    row = flat.shape[1] if flat.ndim == 2 else 0
    nbytes = np.asarray(lengths, np.int64) * row
    offs = aligned_offsets(nbytes, alignment, start) - start
    if offs[0] == 0 and np.array_equal(offs[1:-1], np.cumsum(nbytes)[:-1]):
        return flat.tobytes() + b"\0" * int(offs[-1] - nbytes.sum())
    out = np.zeros(int(offs[-1]), dtype=np.uint8)
    raw = flat.reshape(-1)
    pos = 0
    for i, nb in enumerate(nbytes.tolist()):
        out[offs[i] : offs[i] + nb] = raw[pos : pos + nb]
        pos += nb
    return out.tobytes()


class SegmentWriter:
    """Append batches of documents to a new (or partially written) segment.

    Parameters
    ----------
    seg_dir : Path
        The segment directory (created).
    dim, fde_dim : int
        Token and FDE dimensions.
    table_dtype : str
        ``"float16"`` or ``"int8"``.
    alignment : int
        Record alignment in bytes.
    chunk_rows : int
        Rows per FDE zarr chunk (the build batch size).
    store_text : bool
        Whether to write ``texts.bin``.
    """

    def __init__(
        self, seg_dir: Path, *, dim: int, fde_dim: int, table_dtype: str, alignment: int,
        chunk_rows: int, store_text: bool, uses_codec: bool = False, fde_dtype: str = "float32",
        approx_bytes: int = 0,
    ) -> None:
        import zarr

        self.dir = Path(seg_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dim, self.fde_dim = dim, fde_dim
        self.table_dtype, self.alignment, self.store_text = table_dtype, alignment, store_text
        self.codec: Any = None  # set (mvr._codec.TokenCodec) before the first append when used
        self.uses_codec = uses_codec
        self.approx_bytes = approx_bytes if uses_codec else 0  # acodes.bin: bytes per token
        self.has_checksums = True  # checksums.bin: every record's and text's hash
        self._failed = False  # a write failed: close() then drops what is buffered
        self.num_documents = 0
        self.num_tokens = 0
        names = [IDS_FILE, LENGTHS_FILE, TOKENS_FILE, CHECKSUMS_FILE]
        if uses_codec:
            names.append(CIDS_FILE)
        if self.approx_bytes:
            names.append(ACODES_FILE)
        if store_text:
            names += [TEXTS_FILE, TEXT_LENGTHS_FILE]
        self._files = {n: open(self.dir / n, "ab") for n in names}  # noqa: SIM115
        self._dirty_chunks: set[int] = set()
        self._meta_dirty = True
        fde_path = self.dir / FDE_DIR
        if (fde_path / "zarr.json").exists():
            self._fde = zarr.open_array(str(fde_path), mode="r+")
        else:
            with writing(fde_path):
                self._fde = zarr.create_array(
                    store=str(fde_path), shape=(0, fde_dim), chunks=(chunk_rows, fde_dim),
                    dtype=fde_dtype, compressors=None, fill_value=0.0, zarr_format=3,
                )

    # ------------------------------------------------------------------ appending
    def _write(self, name: str, data: bytes) -> None:
        """Append ``data`` to file ``name`` (IndexWriteError naming it when the disk fails)."""
        try:
            with writing(self.dir / name):
                self._files[name].write(data)
        except BaseException:
            self._failed = True
            raise

    def append(
        self, ids: Sequence[str], texts: Sequence[str | None] | None, pooled: MultiVectors,
        fdes: np.ndarray, coded: Any = None,
    ) -> None:
        """Append one batch (not yet committed): records, ids, texts, FDE rows.
        ``coded``: the tokens' (centroid ids, residual codes[, approximate codes]) when
        already encoded (compaction copies them)."""
        token_hashes = self.append_tokens(pooled, coded)
        text_hashes = self.append_ids(ids, texts)
        if CHECKSUMS_FILE in self._files:  # per document: its record's and its text's hash
            pairs = np.stack([token_hashes, text_hashes], axis=1).astype("<u8")
            self._write(CHECKSUMS_FILE, pairs.tobytes())
        self.append_fdes(fdes)
        self.num_documents += len(ids)
        self.num_tokens += pooled.total_tokens

    def append_tokens(self, pooled: MultiVectors, coded: Any = None) -> np.ndarray:
        """Append the batch's records; returns each record's hash (mvr._checksum)."""
        f = self._files[TOKENS_FILE]
        lengths = np.asarray(pooled.lengths, dtype=np.int64)
        start = f.tell()
        if self.uses_codec:
            if self.codec is None:
                raise ConfigError("segment writer: the token codec must be set before tokens")
            acodes = None
            if coded is not None:
                cids, codes = coded[:2]
                acodes = coded[2] if len(coded) > 2 else None
            else:  # one pass: a refined table's codes are taken after the approximate ones
                cids, codes, acodes = self.codec.encode_full(pooled.vectors)
            if codes is None and self.table_dtype in CODED_DTYPES:
                codes = self.codec.encode(pooled.vectors)[1]
            self._write(CIDS_FILE, cids.astype("<u2").tobytes())
            if self.approx_bytes:
                if acodes is None:
                    acodes = self.codec.encode_approx(pooled.vectors, cids)
                if acodes.shape != (len(cids), self.approx_bytes):
                    raise ConfigError(
                        f"approximate codes: expected shape ({len(cids)}, {self.approx_bytes}), "
                        f"got {acodes.shape} (a codec of {self.codec.approx_bytes} bytes)"
                    )
                self._write(ACODES_FILE, np.ascontiguousarray(acodes, np.uint8).tobytes())
        if self.table_dtype in CODED_DTYPES:  # res4 / res8 / pqr: residual codes, ids apart
            packed = _pack_codes(codes, lengths, self.alignment, start)
        else:
            packed = _pack_records(pooled.vectors, lengths, self.dim, self.table_dtype,
                                   self.alignment, start)
        self._write(TOKENS_FILE, packed)
        self._write(LENGTHS_FILE, lengths.astype("<i8").tobytes())
        nbytes = np.asarray(record_nbytes(lengths, self.dim, self.table_dtype), np.int64)
        offs = aligned_offsets(nbytes, self.alignment, start) - start
        return record_hashes(np.frombuffer(packed, np.uint8), offs[:-1], nbytes)

    def append_ids(self, ids: Sequence[str], texts: Sequence[str | None] | None) -> np.ndarray:
        """Append ids (and texts); returns each text's hash (0 where none is stored)."""
        self._write(IDS_FILE, 
            "".join(json.dumps(i, ensure_ascii=False) + "\n" for i in ids).encode()
        )
        if not self.store_text:
            return np.zeros(len(ids), np.uint64)
        encoded = [None if t is None else t.encode() for t in (texts or [None] * len(ids))]
        blob = b"".join(b for b in encoded if b is not None)
        self._write(TEXTS_FILE, blob)
        lens = np.array([-1 if b is None else len(b) for b in encoded], dtype="<i8")
        self._write(TEXT_LENGTHS_FILE, lens.tobytes())
        starts = np.concatenate([[0], np.cumsum(np.maximum(lens, 0))[:-1]]).astype(np.int64)
        hashes = record_hashes(np.frombuffer(blob, np.uint8), starts, np.maximum(lens, 0))
        hashes[lens < 0] = 0
        return hashes

    def append_fdes(self, fdes: np.ndarray) -> None:
        n = self.num_documents
        m = fdes.shape[0]
        rows = self._fde.chunks[0]
        with writing(self.dir / FDE_DIR):
            if self._fde.shape[0] < n + m:  # grow ahead: zarr.json is rewritten every _GROW chunks
                self._fde.resize((n + m + _GROW_CHUNKS * rows, self.fde_dim))
                self._meta_dirty = True
            self._fde[n : n + m] = np.asarray(fdes, dtype=self._fde.dtype)
        self._dirty_chunks.update(range(n // rows, (n + m - 1) // rows + 1) if m else ())

    # ------------------------------------------------------------------ commits
    def commit(self) -> dict[str, Any]:
        """Flush and fsync every file; return the state to record in the progress file.

        A failed write or fsync (buffered data is written here) is IndexWriteError naming
        the file."""
        for name, f in self._files.items():
            try:
                with writing(self.dir / name, "write"):
                    f.flush()
                with writing(self.dir / name, "fsync"):
                    os.fsync(f.fileno())
            except BaseException:
                self._failed = True
                raise
        self._fsync_fde_chunks()
        return {
            "documents": self.num_documents,
            "tokens": self.num_tokens,
            "sizes": {n: f.tell() for n, f in self._files.items()},
        }

    def _fsync_fde_chunks(self) -> None:
        """fsync the FDE chunk files written since the last commit (and their folders), and
        the metadata when a resize rewrote it."""
        root = self.dir / FDE_DIR
        paths = [root / "c" / str(i) / "0" for i in sorted(self._dirty_chunks)]
        dirs = {p.parent for p in paths}
        if paths:
            dirs.add(root / "c")
        if self._meta_dirty:
            paths.append(root / "zarr.json")
            dirs.add(root)
        for p in paths:
            if p.exists():
                fsync_file(p)
        for d in sorted(dirs):
            if d.exists():
                fsync_dir(d)
        self._dirty_chunks.clear()
        self._meta_dirty = False

    def truncate_to(self, state: dict[str, Any]) -> None:
        """Roll every file back to a committed ``state`` (from :meth:`commit`)."""
        if CHECKSUMS_FILE not in state["sizes"]:  # a build begun by a version without them
            self._files.pop(CHECKSUMS_FILE).close()
            (self.dir / CHECKSUMS_FILE).unlink()
            self.has_checksums = False
        for name, f in self._files.items():
            size = int(state["sizes"].get(name, 0))
            actual = os.fstat(f.fileno()).st_size
            if actual < size:
                raise CorruptIndexError(
                    f"{self.dir / name}: shorter than its last committed size during resume, "
                    f"expected >= {size} bytes, got {actual}"
                )
            f.truncate(size)
            f.seek(size)
        self.num_documents = int(state["documents"])
        self.num_tokens = int(state["tokens"])
        if self._fde.shape[0] < self.num_documents:
            raise CorruptIndexError(
                f"{self.dir / FDE_DIR}: fewer FDE rows than committed during resume, expected >= "
                f"{self.num_documents}, got {self._fde.shape[0]}"
            )
        self._fde.resize((self.num_documents, self.fde_dim))
        self._meta_dirty = True

    def close(self) -> None:
        """Close the files and trim the FDE array to the appended rows (it grows ahead)."""
        files, self._files = self._files, {}
        if files and self._fde.shape[0] != self.num_documents and not self._failed:
            with writing(self.dir / FDE_DIR):  # rewrites zarr.json, drops the chunks beyond
                self._fde.resize((self.num_documents, self.fde_dim))
        for name, f in files.items():
            try:
                with writing(self.dir / name):
                    f.close()  # flushes what is buffered
            except OSError:
                if not self._failed:  # after a failed write the caller handles that one
                    raise
