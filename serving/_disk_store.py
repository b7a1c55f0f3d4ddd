"""The re-ranking table read from SSD: one ``os.pread`` per document record.

Only the byte-budgeted cache (:class:`serving._cache.ClockCache`) and the
per-document offsets/lengths live in RAM. Reads run on a thread pool
(``os.preadv`` releases the GIL, so many are in flight at once), optionally
with ``O_DIRECT`` so that they bypass the page cache and measure the disk.
Where the filesystem refuses ``O_DIRECT`` (tmpfs, some overlay and network
filesystems answer ``EINVAL``) the store logs a notice and reads buffered.

Layout read (``mvr.format``): document ``i``'s record starts at byte
``record_offsets[i]`` of its ``tokens.bin`` and holds ``lengths[i] * dim``
float16 values, or int8 values followed by ``lengths[i]`` float32 scales.
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mvr._multivectors import MultiVectors
from mvr.errors import (
    ChecksumMismatchError,
    ConfigError,
    DimensionMismatchError,
    RowOutOfRangeError,
    TokenReadError,
)
from mvr.format import CODED_DTYPES, TABLE_DTYPES, decode_record, record_nbytes
from serving._cache import ClockCache

__all__ = ["TableFile", "DiskTokenStore", "DIRECT_ALIGNMENT", "DEFAULT_CACHE_FRACTION"]

logger = logging.getLogger("mvr.serving")

DIRECT_ALIGNMENT = 4096
"""O_DIRECT offsets, lengths and buffers are multiples of this (the page size;
safe for 512 B and 4 KiB logical blocks)."""

DEFAULT_CACHE_FRACTION = 0.05
"""Default ``cache_bytes`` as a fraction of the table's bytes."""

_REFUSED = (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP)


@dataclass(frozen=True)
class TableFile:
    """One ``tokens.bin`` and the records it holds.

    Parameters
    ----------
    path : str or Path
        The file.
    record_offsets : np.ndarray
        Shape: (n,) or (n + 1,), int64 byte offset of each record (an extra
        end entry is ignored).
    lengths : np.ndarray
        Shape: (n,), int64 tokens per record.
    """

    path: str | Path
    record_offsets: np.ndarray
    lengths: np.ndarray


class _File:
    """An open table file: its descriptor and whether it is read with O_DIRECT."""

    def __init__(self, path: Path, direct: bool) -> None:
        self.path = path
        self.direct = False
        self.lock = threading.Lock()
        self._retired: list[int] = []
        if direct:
            self.fd = self._open_direct()
        else:
            self.fd = os.open(path, os.O_RDONLY)
        if not self.direct and hasattr(os, "posix_fadvise"):
            os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_RANDOM)

    def _open_direct(self) -> int:
        flag = getattr(os, "O_DIRECT", 0)
        if not flag:
            logger.warning("O_DIRECT is not available on this platform; reading %s buffered", self.path)
            return os.open(self.path, os.O_RDONLY)
        try:
            fd = os.open(self.path, os.O_RDONLY | flag)
        except OSError as e:
            if e.errno not in _REFUSED:
                raise
            logger.warning(
                "the filesystem refused O_DIRECT for %s (%s); falling back to buffered reads",
                self.path, e,
            )
            return os.open(self.path, os.O_RDONLY)
        self.direct = True
        return fd

    def fall_back(self, err: OSError) -> None:
        """Reopen buffered after a read refused with EINVAL under O_DIRECT."""
        with self.lock:
            if not self.direct:
                return
            logger.warning(
                "O_DIRECT read refused for %s (%s); falling back to buffered reads", self.path, err
            )
            self._retired.append(self.fd)  # closed in close(): reads in flight may still use it
            self.fd = os.open(self.path, os.O_RDONLY)
            self.direct = False

    def close(self) -> None:
        for fd in [self.fd, *self._retired]:
            try:
                os.close(fd)
            except OSError:
                pass
        self._retired = []


class _Counters:
    """Read and wait counters shared by the pool's threads (updated under a lock)."""

    FIELDS = (
        "reads_issued", "bytes_read", "bytes_requested", "read_errors",
        "rows_needed", "rows_resident", "rows_waited", "rows_read_sync",
        "rows_prefetched", "rows_predicted", "rows_checked",
    )

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        for f in self.FIELDS:
            setattr(self, f, 0)
        self.read_seconds = 0.0
        self.wait_seconds = 0.0

    def add(self, **kw: float) -> None:
        with self.lock:
            for k, v in kw.items():
                setattr(self, k, getattr(self, k) + v)

    def as_dict(self) -> dict[str, Any]:
        with self.lock:
            out: dict[str, Any] = {f: getattr(self, f) for f in self.FIELDS}
            out["read_seconds"] = self.read_seconds
            out["wait_seconds"] = self.wait_seconds
        need = out["rows_needed"]
        out["prefetch_hit_rate"] = out["rows_resident"] / need if need else 0.0
        return out


class DiskTokenStore:
    """:class:`mvr.TokenStore` over table files on disk; RAM holds only the cache.

    Parameters
    ----------
    files : TableFile or sequence of TableFile
        The table files; global rows number their records consecutively.
    dim : int
        Token dimension.
    dtype : {"float16", "int8"}
        Record encoding (``mvr.format``).
    ids : sequence of str, optional
        Document id of each global row, used in error messages.
    cache_bytes : int, optional
        Cache budget; default :data:`DEFAULT_CACHE_FRACTION` of the table bytes.
    read_threads : int
        Reads in flight at most (thread pool size).
    direct : bool
        Open with ``O_DIRECT`` (falls back with a logged notice where refused).
    prefetch, coarse, coarse_dims, coarse_nlist, coarse_nprobe, coarse_candidates, coarse_factor
        Prefetcher options, used by the searcher (:func:`serving._prefetch.make_prefetcher`):
        on/off; the coarse pass: ``"ivf"`` (a small 8-bit faiss IVF over the FDEs,
        ``coarse_nlist`` lists, ``coarse_nprobe`` scanned), ``"pca"`` (FDEs projected on
        ``coarse_dims`` principal directions) or ``"prefix"`` (the first ``coarse_dims``
        FDE columns); the rows prefetched per query: ``coarse_candidates``, or
        ``coarse_factor`` x the first stage's N when None.

    ``files`` may also be a ``serving._stores.TableLayout`` (dim and dtype come from it).

    Examples
    --------
    >>> store = DiskTokenStore(TableFile(path, offsets, lengths), dim=128)  # doctest: +SKIP
    >>> store.get(np.array([3, 1])).lengths.tolist()                         # doctest: +SKIP
    """

    def __init__(
        self,
        files: TableFile | Sequence[TableFile] | Any,
        *,
        dim: int | None = None,
        dtype: str | None = None,
        ids: Sequence[str] | None = None,
        cache_bytes: int | None = None,
        read_threads: int = 16,
        direct: bool = False,
        prefetch: bool = True,
        coarse: str = "ivf",
        coarse_dims: int = 64,
        coarse_nlist: int | None = None,
        coarse_nprobe: int | None = None,
        coarse_candidates: int | None = None,
        coarse_factor: float = 1.2,
    ) -> None:
        self._layout: Any = None
        if hasattr(files, "paths") and hasattr(files, "segment"):  # a serving._stores.TableLayout
            self._layout = files
            files, dim, dtype = _layout_files(files), files.dim, files.dtype
        dtype = dtype or "float16"
        if dim is None:
            raise ConfigError("DiskTokenStore: expected dim= (the token dimension), got None")
        self.prefetch_options = _prefetch_options(
            prefetch, coarse, coarse_dims, coarse_candidates, coarse_factor
        )
        self.prefetch_options.update(coarse_nlist=coarse_nlist, coarse_nprobe=coarse_nprobe)
        self.prefetcher: Any = None
        if dtype not in TABLE_DTYPES:
            raise ConfigError(f"table dtype: expected one of {TABLE_DTYPES}, got {dtype!r}")
        if read_threads < 1:
            raise ConfigError(f"read_threads: expected >= 1, got {read_threads}")
        if dim < 1:
            raise ConfigError(f"dim: expected >= 1, got {dim}")
        self._closed = False
        self._files: list[_File] = []
        self._pool: ThreadPoolExecutor | None = None
        files = [files] if isinstance(files, TableFile) else list(files)
        self._dim, self._dtype, self._ids = int(dim), dtype, ids
        self._offsets, self._lengths, self._file_idx = _concat_files(files)
        self._nbytes = np.asarray(record_nbytes(self._lengths, dim, dtype), dtype=np.int64)
        if ids is not None and len(ids) != len(self._lengths):
            raise DimensionMismatchError(
                f"ids: expected {len(self._lengths)} (one per record), got {len(ids)}"
            )
        self.table_bytes = int(self._nbytes.sum())
        if cache_bytes is None:
            cache_bytes = int(self.table_bytes * DEFAULT_CACHE_FRACTION)
        self.cache = ClockCache(cache_bytes)
        self.direct_requested = bool(direct)
        self.read_threads = int(read_threads)
        try:
            for f in files:
                self._files.append(_File(Path(f.path), self.direct_requested))
        except OSError as e:
            self.close()
            raise TokenReadError(f"cannot open re-ranking table {e.filename}: {e.strerror}") from e
        self._pool = ThreadPoolExecutor(read_threads, thread_name_prefix="mvr-read")
        self._inflight: dict[int, Future[dict[int, Any]]] = {}
        self._inflight_lock = threading.Lock()
        self._local = threading.local()
        self.counters = _Counters()

    # ------------------------------------------------------------------ TokenStore
    @property
    def dim(self) -> int:
        return self._dim

    @property
    def dtype(self) -> str:
        return self._dtype

    @property
    def direct(self) -> bool:
        """Whether every file is (still) read with O_DIRECT."""
        return bool(self._files) and all(f.direct for f in self._files)

    def __len__(self) -> int:
        return int(self._lengths.shape[0])

    def lengths(self, rows: np.ndarray) -> np.ndarray:
        """Shape: (len(rows),) int64 token counts."""
        return self._lengths[self._check_rows(rows)]

    def get(
        self, rows: np.ndarray, *, prefetched: Mapping[int, Any] | None = None
    ) -> MultiVectors:
        """Token vectors of ``rows`` (in that order), reading what is not resident.

        Parameters
        ----------
        rows : np.ndarray
            Shape: (m,), int64 global rows.
        prefetched : mapping row -> Future or np.ndarray, optional
            Reads started earlier (:meth:`prefetch`); completed ones count as
            resident, pending ones are waited for.

        Raises
        ------
        TokenReadError
            A record could not be read whole; names the document and the file.
        """
        rows = self._check_rows(rows)
        uniq = np.unique(rows)
        arrays = self._gather(uniq, prefetched or {})
        parts = [arrays[int(r)] for r in rows]
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(self._lengths[rows], out=offsets[1:])
        out_dtype = np.float16 if self._dtype == "float16" else np.float32
        flat = np.concatenate(parts) if parts else np.zeros((0, self._dim), out_dtype)
        return MultiVectors(flat.reshape(-1, self._dim), offsets, validate=False)

    def prefetch(self, rows: np.ndarray) -> dict[int, Any]:
        """Start reading ``rows`` now; returns row -> in-flight read (or the cached array).

        The returned mapping keeps the arrays alive until the caller drops it,
        so a prefetched record is not lost to eviction before it is re-ranked.
        """
        rows = np.unique(self._check_rows(rows))
        handle: dict[int, Any] = {}
        missing = []
        for r in rows.tolist():
            cached = self.cache.peek(r)
            if cached is not None:
                handle[r] = cached
            else:
                missing.append(r)
        handle.update(self._submit_many(missing))
        self.counters.add(rows_prefetched=len(handle))
        return handle

    def close(self) -> None:
        """Stop the read threads and close the files (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        for f in self._files:
            f.close()
        self._files = []
        if hasattr(self, "cache"):
            self.cache.clear()

    def __enter__(self) -> DiskTokenStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reporting
    @property
    def resident_bytes(self) -> int:
        """Bytes of token vectors held in RAM (the cache)."""
        return self.cache.used_bytes

    def config(self) -> dict[str, Any]:
        return {
            "mode": "ssd",
            **self.prefetch_options,
            "cache_bytes": self.cache.capacity_bytes,
            "read_threads": self.read_threads,
            "direct_requested": self.direct_requested,
            "direct": self.direct,
            "table_bytes": self.table_bytes,
            "dtype": self._dtype,
            "files": [str(f.path) for f in self._files],
        }

    def stats(self) -> dict[str, Any]:
        """Counters: reads, bytes, read/wait time, prefetch and cache hit rates."""
        out = self.counters.as_dict()
        out["cache"] = self.cache.stats()
        out["cache_hit_rate"] = out["cache"]["hit_rate"]
        out["resident_bytes"] = self.resident_bytes
        out["config"] = self.config()
        pred, pre = out.pop("rows_predicted"), out["rows_prefetched"]
        checked = out.pop("rows_checked")
        out["coarse_recall"] = pred / checked if checked else 0.0
        out["wasted_prefetch_reads"] = max(pre - pred, 0)
        if self.prefetcher is not None:
            out["prefetcher"] = self.prefetcher.config()
        return out

    def reset_stats(self) -> None:
        self.counters.reset()
        c = self.cache
        c.hits = c.misses = c.evictions = c.insertions = 0

    # ------------------------------------------------------------------ internals
    def _check_rows(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        n = len(self)
        if rows.size and (rows.min() < 0 or rows.max() >= n):
            bad = rows[(rows < 0) | (rows >= n)][0]
            raise RowOutOfRangeError(
                f"row {int(bad)} out of range: expected 0 <= row < {n} (a table of {n} documents)"
            )
        return rows

    def _gather(self, rows: np.ndarray, prefetched: Mapping[int, Any]) -> dict[int, np.ndarray]:
        """Arrays of the unique ``rows``: resident ones at once, the rest read and waited for."""
        have: dict[int, np.ndarray] = {}
        pending: dict[int, Future[dict[int, Any]]] = {}
        misses = []
        for r in rows.tolist():
            item = prefetched.get(r)
            if isinstance(item, np.ndarray):
                have[r] = item
            elif item is not None and item.done() and item.exception() is None:
                have[r] = _unwrap(item.result()[r])
            elif item is not None:
                pending[r] = item
            else:
                cached = self.cache.get(r)
                if cached is not None:
                    have[r] = cached
                else:
                    misses.append(r)
        resident = len(have)
        waited_rows = len(pending)
        pending.update(self._submit_many(misses))
        if pending:
            t0 = time.perf_counter()
            wait_futures(set(pending.values()))
            self.counters.add(wait_seconds=time.perf_counter() - t0)
            for r, fut in pending.items():
                have[r] = _unwrap(fut.result()[r])  # raises TokenReadError for this document
        self.counters.add(
            rows_needed=len(rows), rows_resident=resident,
            rows_waited=waited_rows, rows_read_sync=len(misses),
            rows_checked=len(rows) if prefetched else 0,
            rows_predicted=sum(1 for r in rows.tolist() if r in prefetched),
        )
        return have

    def _submit_many(self, rows: list[int]) -> dict[int, Future[dict[int, Any]]]:
        """Start reads of ``rows`` (already in flight ones are joined), in chunks sorted by
        file offset spread over the pool; returns row -> its chunk's future."""
        out: dict[int, Future[dict[int, Any]]] = {}
        with self._inflight_lock:
            if self._closed or self._pool is None:
                raise TokenReadError("the re-ranking table store is closed")
            new = []
            for r in rows:
                fut = self._inflight.get(r)
                if fut is None:
                    new.append(r)
                else:
                    out[r] = fut
            if not new:
                return out
            new.sort(key=lambda r: (int(self._file_idx[r]), int(self._offsets[r])))
            n_chunks = min(len(new), 2 * self.read_threads)
            for chunk in np.array_split(np.asarray(new, np.int64), n_chunks):
                part = chunk.tolist()
                fut = self._pool.submit(self._read_chunk, part)
                for r in part:
                    self._inflight[r] = fut
                    out[r] = fut
        return out

    def _read_chunk(self, rows: list[int]) -> dict[int, Any]:
        """Read and cache ``rows``; row -> array, or the TokenReadError of that row.

        One pread per record, then the chunk's checksums and residual codes are checked
        and decoded together (one call each, not one per record: for the short records
        of a large candidate list the per-record calls cost more than the reads).
        """
        out: dict[int, Any] = {}
        n_ok = got_sum = need_sum = errors = 0
        secs = 0.0
        try:
            raw: dict[int, np.ndarray] = {}
            for r in rows:
                try:
                    buf, got, took = self._read_raw(r)
                except TokenReadError as e:
                    out[r] = e
                    errors += 1
                    continue
                raw[r] = buf
                got_sum += got
                need_sum += int(self._nbytes[r])
                secs += took
            for r, e in self._verify_many(raw).items():
                del raw[r]
                out[r] = e
                errors += 1
            for r, arr in self._decode_many(raw).items():
                n_ok += 1
                self.cache.put(r, arr)
                out[r] = arr
            return out
        finally:
            self.counters.add(
                reads_issued=n_ok, bytes_read=got_sum, bytes_requested=need_sum,
                read_seconds=secs, read_errors=errors,
            )
            with self._inflight_lock:
                for r in rows:
                    self._inflight.pop(r, None)

    def _verify_many(self, raw: dict[int, np.ndarray]) -> dict[int, Exception]:
        """Checksum every record in ``raw`` (row -> bytes), a segment at a time; returns
        row -> ChecksumMismatchError for those that fail (each checked alone on a miss)."""
        if self._layout is None or not raw:
            return {}
        bad: dict[int, Exception] = {}
        rows = np.array([r for r, b in raw.items() if len(b)], dtype=np.int64)
        segs = self._file_idx[rows]
        for seg in np.unique(segs).tolist():
            part = rows[segs == seg]
            bufs = [raw[int(r)] for r in part]
            nbytes = np.array([len(b) for b in bufs], dtype=np.int64)
            starts = np.zeros(len(bufs), dtype=np.int64)
            np.cumsum(nbytes[:-1], out=starts[1:])
            try:
                self._layout.verify_records(np.concatenate(bufs), part, starts, nbytes, seg,
                                            self._ids)
                continue
            except ChecksumMismatchError:
                pass
            for r, b in zip(part.tolist(), bufs, strict=True):
                try:
                    self._layout.verify_records(b, np.array([r]), np.zeros(1, np.int64),
                                                np.array([len(b)]), seg, self._ids)
                except ChecksumMismatchError as e:
                    bad[r] = e
        return bad

    def _decode_many(self, raw: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
        """Decode the records in ``raw`` (row -> exactly the record's bytes)."""
        if not raw:
            return {}
        if self._dtype not in CODED_DTYPES:
            return {r: self._decode_one(r, b) for r, b in raw.items()}
        lay = self._layout
        if lay is None or lay.codec is None:
            raise ConfigError(f"a {self._dtype} table needs the index's token codec")
        rows = np.fromiter(raw, dtype=np.int64, count=len(raw))
        codes = np.concatenate([raw[int(r)] for r in rows]).reshape(-1, lay.codec.code_size)
        flat = lay.decode_rows(rows, codes)
        lens = self._lengths[rows]
        ends = np.cumsum(lens)
        return {int(r): flat[e - n : e] for r, n, e in zip(rows.tolist(), lens.tolist(),
                                                            ends.tolist(), strict=True)}

    def _decode_one(self, row: int, buf: np.ndarray) -> np.ndarray:
        n = int(self._lengths[row])
        if self._dtype == "float16":
            return buf.view("<f2").reshape(n, self._dim)
        f = self._files[int(self._file_idx[row])]
        return decode_record(buf, n, self._dim, self._dtype, what=self._what(row, f.path))

    def _what(self, row: int, path: Path) -> str:
        doc = f"document row {row}"
        if self._ids is not None:
            doc += f" (id {self._ids[row]!r})"
        return f"{doc} in {path}"

    def _read_raw(self, row: int) -> tuple[np.ndarray, int, float]:
        """One record's bytes: one (aligned) pread; returns (exactly the record's bytes,
        bytes read, seconds). Raises TokenReadError naming the document and the file."""
        f = self._files[int(self._file_idx[row])]
        off, need = int(self._offsets[row]), int(self._nbytes[row])
        if need == 0:
            return np.zeros(0, np.uint8), 0, 0.0
        t0 = time.perf_counter()
        try:
            buf, got = self._pread(f, off, need)
        except OSError as e:
            raise TokenReadError(
                f"{self._what(row, f.path)}: read of {need} bytes at offset {off} failed: "
                f"{e.strerror or e}"
            ) from e
        took = time.perf_counter() - t0
        if len(buf) < need:
            raise TokenReadError(
                f"{self._what(row, f.path)}: short read at offset {off}: expected {need} bytes, "
                f"got {len(buf)} (file truncated?)"
            )
        return buf[:need], got, took

    def _pread(self, f: _File, off: int, need: int) -> tuple[np.ndarray, int]:
        """Read ``need`` bytes at ``off``; returns (buffer holding what was read, bytes read)."""
        if f.direct:
            try:
                return self._pread_direct(f, off, need)
            except OSError as e:
                if e.errno not in _REFUSED:
                    raise
                f.fall_back(e)
        buf = np.empty(need, dtype=np.uint8)
        got = os.preadv(f.fd, [buf], off)
        return buf[:got], got

    def _pread_direct(self, f: _File, off: int, need: int) -> tuple[np.ndarray, int]:
        a = DIRECT_ALIGNMENT
        start = off - off % a
        span = -(-(off + need - start) // a) * a
        scratch = self._scratch(span)
        got = os.preadv(f.fd, [scratch[:span]], start)
        lo = off - start
        hi = min(max(got, lo), lo + need)
        return scratch[lo:hi].copy(), got

    def _scratch(self, size: int) -> np.ndarray:
        """A page-aligned per-thread buffer of at least ``size`` bytes (anonymous mmap)."""
        buf = getattr(self._local, "buf", None)
        if buf is None or buf.shape[0] < size:
            cap = max(size, 1 << 16)
            mm = mmap.mmap(-1, cap)
            self._local.mm = mm
            buf = self._local.buf = np.frombuffer(mm, dtype=np.uint8)
        return buf


def _layout_files(layout: Any) -> list[TableFile]:
    """One TableFile per segment of a ``serving._stores.TableLayout`` (rows stay in order)."""
    seg = np.asarray(layout.segment)
    if seg.size and np.any(np.diff(seg) < 0):
        raise ConfigError("table layout: expected segment numbers non-decreasing in row order")
    out = []
    for i, path in enumerate(layout.paths):
        sel = seg == i
        out.append(TableFile(path, np.asarray(layout.offsets)[sel], np.asarray(layout.lengths)[sel]))
    return out


def _prefetch_options(
    prefetch: bool, coarse: str, dims: int, candidates: int | None, factor: float
) -> dict[str, Any]:
    if coarse not in ("ivf", "pca", "prefix"):
        raise ConfigError(f"coarse: expected 'ivf', 'pca' or 'prefix', got {coarse!r}")
    if not isinstance(dims, int) or dims < 1:
        raise ConfigError(f"coarse_dims: expected an int >= 1, got {dims!r}")
    if candidates is not None and (not isinstance(candidates, int) or candidates < 1):
        raise ConfigError(f"coarse_candidates: expected None or an int >= 1, got {candidates!r}")
    if not factor > 0:
        raise ConfigError(f"coarse_factor: expected > 0, got {factor!r}")
    return {"prefetch": bool(prefetch), "coarse": coarse, "coarse_dims": dims,
            "coarse_candidates": candidates, "coarse_factor": float(factor)}


def _unwrap(value: Any) -> np.ndarray:
    if isinstance(value, BaseException):
        raise value
    return value


def _concat_files(files: list[TableFile]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Global (offsets, lengths, file index) over all files' records."""
    offs, lens, idx = [], [], []
    for i, f in enumerate(files):
        lengths = np.asarray(f.lengths, dtype=np.int64).reshape(-1)
        ro = np.asarray(f.record_offsets, dtype=np.int64).reshape(-1)
        if ro.shape[0] not in (lengths.shape[0], lengths.shape[0] + 1):
            raise DimensionMismatchError(
                f"{f.path}: record_offsets: expected {lengths.shape[0]} or {lengths.shape[0] + 1} "
                f"entries (one per record), got {ro.shape[0]}"
            )
        offs.append(ro[: lengths.shape[0]])
        lens.append(lengths)
        idx.append(np.full(lengths.shape[0], i, dtype=np.int32))
    if not files:
        raise ConfigError("DiskTokenStore: expected at least one table file, got none")
    return np.concatenate(offs), np.concatenate(lens), np.concatenate(idx)
