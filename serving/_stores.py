"""Token stores: the re-ranking table in memory or memory-mapped.

Both read the segment files ``tokens.bin`` described by a :class:`TableLayout`
(record offsets derive from the token counts, see :mod:`mvr.format`) and gather
the records of the requested rows with one numba kernel per segment. The SSD
store (``serving._disk_store``) takes the same layout; :func:`make_store` is the
one place that maps a ``mode`` to a store.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numba
import numpy as np

from mvr._multivectors import MultiVectors
from mvr.errors import ConfigError, TokenReadError
from mvr.format import CODED_DTYPES, record_nbytes

__all__ = ["TableLayout", "MemoryTokenStore", "MmapTokenStore", "make_store", "STORE_MODES"]

STORE_MODES = ("memory", "mmap", "ssd")


@dataclass(frozen=True)
class TableLayout:
    """Where every document's record lives.

    Attributes
    ----------
    paths : list of Path
        ``tokens.bin`` of each segment, in manifest order.
    dim : int
        Token dimension.
    dtype : str
        A table dtype of :mod:`mvr.format` (``"float16"``, ``"int8"``, ``"res4"``, ...).
    alignment : int
        Record alignment in bytes.
    lengths : np.ndarray
        Shape: (n,) int64, tokens per global row.
    offsets : np.ndarray
        Shape: (n,) int64, byte offset of each row's record in its segment's file.
    segment : np.ndarray
        Shape: (n,) int32, segment index of each row.
    file_sizes : list of int
        Expected size of each ``tokens.bin``.
    codec : mvr._codec.TokenCodec, optional
        Decodes ``res4`` / ``res8`` records (format 2) and ``pqr2`` / ``pqr4`` (format 4).
    cids : np.ndarray, optional
        Shape: (total_tokens,) uint16: every token's centroid id, global row order.
    tok_starts : np.ndarray, optional
        Shape: (n + 1,) int64: row ``r``'s tokens are ``cids[tok_starts[r]:tok_starts[r+1]]``.
    acodes : np.ndarray, optional
        Shape: (total_tokens, approx_bytes) uint8: every token's approximate code (a
        ``pqr2`` / ``pqr4`` record refines it).
    record_hashes : np.ndarray, optional
        Shape: (n,) uint64: each record's hash (``checksums.bin``), verified as it is read.
    hashed : np.ndarray, optional
        Shape: (n,) bool: rows whose segment has checksums (older segments have none).
    """

    paths: list[Path]
    dim: int
    dtype: str
    alignment: int
    lengths: np.ndarray
    offsets: np.ndarray
    segment: np.ndarray
    file_sizes: list[int]
    codec: Any = None
    cids: np.ndarray | None = None
    tok_starts: np.ndarray | None = None
    acodes: np.ndarray | None = None
    record_hashes: np.ndarray | None = None
    hashed: np.ndarray | None = None

    def verify_records(self, buf: np.ndarray, rows: np.ndarray, starts: np.ndarray,
                       nbytes: np.ndarray, seg: int, ids: Any = None) -> None:
        """Check ``rows``' records (``buf[starts[i]:starts[i] + nbytes[i]]``, all of
        segment ``seg``) against their checksums; ChecksumMismatchError names the file."""
        if self.record_hashes is None or self.hashed is None:
            return
        keep = self.hashed[rows]
        if not keep.all():
            rows, starts, nbytes = rows[keep], starts[keep], nbytes[keep]
        from mvr._checksum import check_records

        check_records(buf, starts, nbytes, self.record_hashes[rows], rows, str(self.paths[seg]),
                      ids)

    @property
    def nbytes(self) -> np.ndarray:
        """Shape: (n,) int64 record bytes (without padding)."""
        return np.asarray(record_nbytes(self.lengths, self.dim, self.dtype), dtype=np.int64)

    @property
    def out_dtype(self) -> np.dtype:
        return np.dtype(np.float16 if self.dtype == "float16" else np.float32)

    @property
    def coded(self) -> bool:
        return self.dtype in CODED_DTYPES

    def decode_rows(self, rows: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Vectors (shape (total, dim) float32) of ``rows``' residual ``codes`` (shape
        (total, code_size), the rows' records back to back)."""
        if self.codec is None or self.cids is None or self.tok_starts is None:
            raise ConfigError(f"a {self.dtype} table needs the index's token codec and ids")
        idx = _token_index(self.tok_starts, np.asarray(rows, np.int64))
        if self.codec.refined:  # pqr2 / pqr4: the approximate codes are the first refinement
            if self.acodes is None:
                raise ConfigError(f"a {self.dtype} table needs the index's approximate codes")
            return self.codec.decode(self.cids[idx], codes, self.acodes[idx])
        return self.codec.decode(self.cids[idx], codes)


def _token_index(tok_starts: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Global token positions of ``rows``' tokens, row after row. Shape: (total,)."""
    starts = tok_starts[rows]
    lens = tok_starts[rows + 1] - starts
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    first = np.repeat(starts - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
    return first + np.arange(total, dtype=np.int64)


def _gather_bytes(
    buf: np.ndarray, starts: np.ndarray, nbytes: np.ndarray, out: np.ndarray,
    out_starts: np.ndarray,
) -> None:
    """Copy records ``buf[starts[i]:starts[i] + nbytes[i]]`` to ``out[out_starts[i]:]``.

    numpy slice assignment is a memcpy, which a numba loop over bytes did not match.
    """
    for s, n, o in zip(starts.tolist(), nbytes.tolist(), out_starts.tolist(), strict=True):
        out[o : o + n] = buf[s : s + n]


@numba.njit(nogil=True, cache=True)
def _gather_int8(buf, starts, ntok, dim, out, out_rows):  # pragma: no cover - numba
    scale = np.empty(1, dtype=np.float32)
    sb = scale.view(np.uint8)
    for i in range(starts.shape[0]):
        s = starts[i]
        t = ntok[i]
        r0 = out_rows[i]
        for j in range(t):
            p = s + t * dim + 4 * j
            sb[0] = buf[p]
            sb[1] = buf[p + 1]
            sb[2] = buf[p + 2]
            sb[3] = buf[p + 3]
            for c in range(dim):
                v = np.int8(buf[s + j * dim + c])
                out[r0 + j, c] = np.float32(v) * scale[0]


class _BufferStore:
    """Shared gather logic over one uint8 buffer per segment."""

    def __init__(self, layout: TableLayout, buffers: list[np.ndarray]) -> None:
        self.layout = layout
        self._buffers = buffers
        self._nbytes = layout.nbytes
        self._row_bytes = int(record_nbytes(1, layout.dim, layout.dtype))
        self._lock = threading.Lock()
        self._bytes_read = 0
        self._rows_read = 0
        self._single = len(buffers) == 1

    @property
    def dim(self) -> int:
        return self.layout.dim

    def __len__(self) -> int:
        return int(self.layout.lengths.shape[0])

    def lengths(self, rows: np.ndarray) -> np.ndarray:
        return self.layout.lengths[np.asarray(rows, dtype=np.int64)]

    def get(self, rows: np.ndarray) -> MultiVectors:
        """Token vectors of ``rows`` (shape (m,) int64), in that order.

        Returns float16 vectors for a float16 table, float32 for int8.
        """
        rows = np.asarray(rows, dtype=np.int64)
        n = len(self)
        if rows.size and (rows.min() < 0 or rows.max() >= n):
            bad = rows[(rows < 0) | (rows >= n)][0]
            raise TokenReadError(f"row {int(bad)} out of range: expected 0 <= row < {n}")
        lay = self.layout
        lens = lay.lengths[rows]
        offsets = np.zeros(rows.shape[0] + 1, dtype=np.int64)
        np.cumsum(lens, out=offsets[1:])
        if lay.coded:
            codes = np.empty((int(offsets[-1]), self._row_bytes), dtype=np.uint8)
            flat_codes = codes.reshape(-1)
        out = np.empty((0 if lay.coded else int(offsets[-1]), lay.dim), dtype=lay.out_dtype)
        groups = [(0, np.arange(rows.shape[0]))] if self._single else [
            (int(s), np.flatnonzero(lay.segment[rows] == s)) for s in np.unique(lay.segment[rows])
        ]
        for seg, pos in groups:
            r = rows[pos]
            lay.verify_records(self._buffers[seg], r, lay.offsets[r], self._nbytes[r], seg)
            if lay.coded:
                _gather_bytes(self._buffers[seg], lay.offsets[r], self._nbytes[r], flat_codes,
                              offsets[pos] * self._row_bytes)
            elif lay.dtype == "float16":
                flat = out.reshape(-1).view(np.uint8)
                _gather_bytes(self._buffers[seg], lay.offsets[r], self._nbytes[r], flat,
                              offsets[pos] * (lay.dim * 2))
            else:
                _gather_int8(self._buffers[seg], lay.offsets[r], lens[pos], lay.dim, out,
                             offsets[pos])
        if lay.coded:
            out = lay.decode_rows(rows, codes)
        with self._lock:
            self._bytes_read += int(self._nbytes[rows].sum())
            self._rows_read += int(rows.shape[0])
        return MultiVectors(out, offsets, validate=False)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"rows_read": self._rows_read, "bytes_read": self._bytes_read,
                    "table_bytes": int(sum(b.nbytes for b in self._buffers))}

    def close(self) -> None:
        self._buffers = []


def _check_size(path: Path, size: int, expected: int) -> None:
    if size != expected:
        raise TokenReadError(f"{path}: expected {expected} bytes, got {size}")


class MemoryTokenStore(_BufferStore):
    """The whole table read into RAM (one buffer per segment)."""

    kind = "memory"

    def __init__(self, layout: TableLayout) -> None:
        buffers = []
        for p, size in zip(layout.paths, layout.file_sizes, strict=True):
            buf = np.fromfile(p, dtype=np.uint8)
            _check_size(p, buf.nbytes, size)
            buffers.append(buf)
        super().__init__(layout, buffers)

    def stats(self) -> dict[str, Any]:
        return {"kind": self.kind, "ram_bytes": sum(b.nbytes for b in self._buffers),
                **super().stats()}


class MmapTokenStore(_BufferStore):
    """The table memory-mapped read-only; the OS page cache holds what is read."""

    kind = "mmap"

    def __init__(self, layout: TableLayout) -> None:
        self._maps = []
        buffers = []
        for p, size in zip(layout.paths, layout.file_sizes, strict=True):
            _check_size(p, p.stat().st_size, size)
            if size == 0:
                buffers.append(np.zeros(0, np.uint8))
                continue
            m = np.memmap(p, dtype=np.uint8, mode="r")
            self._maps.append(m)
            buffers.append(m.view(np.ndarray))
        super().__init__(layout, buffers)

    def stats(self) -> dict[str, Any]:
        return {"kind": self.kind, "ram_bytes": 0, **super().stats()}

    def close(self) -> None:
        super().close()
        for m in self._maps:
            mm = getattr(m, "_mmap", None)
            if mm is not None:
                try:
                    mm.close()
                except (BufferError, ValueError):  # still referenced by a result: GC frees it
                    pass
        self._maps = []


def make_store(mode: str, layout: TableLayout, **options: Any) -> Any:
    """The token store for ``mode``: ``"memory"``, ``"mmap"`` or ``"ssd"``.

    ``options`` go to the SSD store (cache size, O_DIRECT, threads...); the memory and
    mmap stores take none.
    """
    if mode not in STORE_MODES:
        raise ConfigError(f"mode: expected one of {STORE_MODES}, got {mode!r}")
    if mode != "ssd" and options:
        raise ConfigError(f"mode {mode!r} takes no store options, got {sorted(options)}")
    if mode == "memory":
        return MemoryTokenStore(layout)
    if mode == "mmap":
        return MmapTokenStore(layout)
    from serving._disk_store import DiskTokenStore  # the SSD helper's store

    return DiskTokenStore(layout, **options)
