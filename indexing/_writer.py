"""The single writer of an existing index: add segments, delete (tombstones), compact.

One ``IndexWriter`` at a time holds the index's file lock (``.lock``, filelock);
another gets :class:`~mvr.errors.IndexLockedError`. Every operation writes new
files and then commits a new manifest atomically; files are never modified in
place, so searchers opened before keep their snapshot.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from indexing._build import BuildSession, _batches, commit_manifest
from indexing._metadata import stage_live_metadata
from indexing._segment import (
    TextReader,
    open_fdes,
    read_cids,
    read_ids,
    read_lengths,
    record_offsets,
)
from mvr._checksum import check_records
from mvr._index_config import IndexConfig
from mvr._manifest import BUILD_DIR, atomic_write_json, file_entry, read_manifest
from mvr._multivectors import MultiVectors
from mvr._progress import stage_messages
from mvr._segments import read_acodes, read_checksums
from mvr.errors import (
    DocumentNotFoundError,
    EncoderMismatchError,
    IndexLockedError,
)
from mvr.format import LOCK_NAME, SEGMENTS_DIR, TOKENS_FILE, decode_record, record_nbytes

__all__ = ["IndexWriter"]


class IndexWriter:
    """Modify an index: ``add`` (a new segment), ``delete`` (tombstones), ``compact``.

    Parameters
    ----------
    path : str or Path
        An existing index.
    encoder : mvr.Encoder, optional
        Encodes added texts; must match the identity in the manifest.
    timeout : float
        Seconds to wait for the lock (0 = fail at once with IndexLockedError).

    Examples
    --------
    >>> with IndexWriter(path) as w:  # doctest: +SKIP
    ...     w.add([("new-1", vectors)])
    ...     w.delete(["old-7"])
    ...     w.compact()
    """

    def __init__(self, path: str | Path, *, encoder: Any = None, timeout: float = 0.0) -> None:
        from filelock import FileLock, Timeout

        self.path = Path(path)
        read_manifest(self.path)  # refuse a missing / incomplete / unknown-version index first
        self._lock = FileLock(str(self.path / LOCK_NAME))
        try:
            self._lock.acquire(timeout=timeout)
        except Timeout as e:
            raise IndexLockedError(
                f"{self.path}: another writer holds {LOCK_NAME} (waited {timeout} s)"
            ) from e
        try:  # a writer that fails to open must not keep the lock
            self.manifest = read_manifest(self.path)
            self.config = IndexConfig.from_dict(self.manifest["config"])
            self.encoder = encoder
            if encoder is not None and self.manifest["encoder"] not in (None, encoder.identity):
                raise EncoderMismatchError(
                    f"encoder identity: expected {self.manifest['encoder']!r}, got "
                    f"{encoder.identity!r}"
                )
            shutil.rmtree(self.path / BUILD_DIR, ignore_errors=True)  # an interrupted add/compact
        except BaseException:
            self._lock.release()
            raise

    # ------------------------------------------------------------------ helpers
    def _seg_dir(self, name: str) -> Path:
        return self.path / SEGMENTS_DIR / name

    def _tombstones(self) -> dict[str, list[int]]:
        name = self.manifest["tombstones"]
        if name is None:
            return {}
        from mvr._json_files import read_tombstones

        docs = {s["name"]: int(s["documents"]) for s in self.manifest["segments"]}
        return read_tombstones(self.path / name, docs)

    def _live_ids(self) -> dict[str, tuple[str, int]]:
        """id -> (segment name, row) of every live document."""
        tomb = self._tombstones()
        out: dict[str, tuple[str, int]] = {}
        for seg in self.manifest["segments"]:
            dead = set(tomb.get(seg["name"], []))
            for row, i in enumerate(read_ids(self._seg_dir(seg["name"]))):
                if row not in dead:
                    out[i] = (seg["name"], row)
        return out

    def _commit(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self.manifest = commit_manifest(self.path, manifest)
        return self.manifest

    def _new_session(self) -> BuildSession:
        gen = self.manifest["generation"] + 1
        session = BuildSession(
            self.path, "add", self.config, self.manifest["encoder"], self.manifest["dim"],
            f"seg-{gen:06d}", gen,
        )
        shutil.rmtree(session.seg_dir, ignore_errors=True)
        session.codec = self._codec()
        try:
            session.open(None)
        except BaseException:  # e.g. the disk failed at the first commit: leave nothing
            session.close()
            shutil.rmtree(session.seg_dir, ignore_errors=True)
            session.discard_progress()
            raise
        return session

    def _codec(self) -> Any:
        """The index's token codec (format 2), or None."""
        name = self.manifest.get("codec")
        if name is None:
            return None
        from indexing._build import _codec_dtype
        from mvr._codec import TokenCodec

        return TokenCodec.load(self.path / name, _codec_dtype(self.config))

    def _codec_files(self) -> dict[str, Any]:
        name = self.manifest.get("codec")
        return {} if name is None else {name: self.manifest["files"][name]}

    def _append_segment(self, session: BuildSession) -> dict[str, Any]:
        done = session.finish()
        manifest = dict(self.manifest)
        manifest["generation"] = session.generation
        manifest["segments"] = [*self.manifest["segments"], done["entry"]]
        manifest["files"] = {**self.manifest["files"], **done["files"]}
        return self._commit(manifest)

    # ------------------------------------------------------------------ operations
    def add(self, documents: Iterable[Any], *, progress: bool = False) -> int:
        """Index ``documents`` (same forms as :func:`indexing.build_index`) as a new segment.

        Ids must be new (a deleted id may be added again). Returns the number added.
        """
        from tqdm.auto import tqdm

        live = self._live_ids()
        session = None
        added = 0
        try:
            with stage_messages(self.encoder), tqdm(unit="doc", desc="adding",
                                                     disable=not progress) as bar:
                for batch in _batches(documents, self.config.batch_size, 0):
                    if session is None:
                        session = self._new_session()
                    session.add_batch(batch, self.encoder, set(live))
                    added += len(batch)
                    bar.update(len(batch))
            if session is None:
                return 0
            self._append_segment(session)
        except BaseException:
            if session is not None:  # nothing was committed: drop the partial segment
                session.close()
                shutil.rmtree(session.seg_dir, ignore_errors=True)
                session.discard_progress()
            raise
        return added

    def delete(self, ids: Sequence[str] | str) -> int:
        """Tombstone ``ids`` (searches never return them again); a single str is one id.
        Unknown ids raise :class:`DocumentNotFoundError` listing them; nothing is deleted
        then."""
        if isinstance(ids, str):
            ids = [ids]  # not its characters
        live = self._live_ids()
        missing = sorted({i for i in ids if i not in live})
        if missing:
            raise DocumentNotFoundError(
                f"cannot delete {len(missing)} id(s) not in the index (or already deleted): "
                f"{missing[:20]}"
            )
        tomb = self._tombstones()
        targets = {live[i] for i in ids}
        for seg, row in targets:
            tomb.setdefault(seg, []).append(row)
        gen = self.manifest["generation"] + 1
        name = f"tombstones-{gen:06d}.json"
        atomic_write_json(self.path / name, {k: sorted(v) for k, v in sorted(tomb.items())})
        manifest = dict(self.manifest)
        manifest["generation"] = gen
        manifest["tombstones"] = name
        files = {k: v for k, v in self.manifest["files"].items() if not k.startswith("tombstones-")}
        files[name] = file_entry(self.path, name)
        manifest["files"] = files
        manifest["counts"] = {**self.manifest["counts"],
                              "deleted": sum(len(v) for v in tomb.values())}
        self._commit(manifest)
        return len(targets)

    def compact(self, *, progress: bool = False) -> dict[str, Any]:
        """Rewrite every live document into one new segment (dropping tombstones) and
        rebuild its first stage. Vectors are copied as stored (no re-encoding)."""
        session = self._new_session()
        try:
            stage_live_metadata(session, self.path, self.manifest["segments"], self._tombstones())
            for docs, pooled, fdes, coded in self._live_batches(session.codec):
                assert session.writer is not None
                session._write_batch([d[0] for d in docs], [d[1] for d in docs], pooled, fdes,
                                     coded)
            done = session.finish()
        except BaseException:
            session.close()
            shutil.rmtree(session.seg_dir, ignore_errors=True)
            session.discard_progress()
            raise
        manifest = dict(self.manifest)
        manifest["generation"] = session.generation
        manifest["segments"] = [done["entry"]]
        manifest["files"] = {**self._codec_files(), **done["files"]}
        manifest["tombstones"] = None
        manifest["counts"] = {**self.manifest["counts"], "deleted": 0}
        return self._commit(manifest)

    def _live_batches(
        self, codec: Any
    ) -> Iterable[tuple[list[tuple[str, str | None]], MultiVectors, np.ndarray, Any]]:
        """Live documents of every segment, batch by batch: (ids+texts, pooled, fdes,
        (centroid ids, residual codes[, approximate codes]) or None). Codes are copied as
        stored, never re-encoded (approximate codes a segment lacks are computed); FDEs that format 2 dropped are recomputed from the stored tokens."""
        from indexing._build import _fde_batch
        from mvr.format import CODED_DTYPES
        tomb = self._tombstones()
        dtype, align, dim = self.config.table_dtype, self.config.record_alignment, self.manifest["dim"]
        bs = self.config.batch_size
        for seg in self.manifest["segments"]:
            d = self._seg_dir(seg["name"])
            dead = np.zeros(seg["documents"], dtype=bool)
            dead[np.asarray(tomb.get(seg["name"], []), dtype=np.int64)] = True
            ids, lengths = read_ids(d), read_lengths(d)
            offs = record_offsets(lengths, dim, dtype, align)
            fdes = open_fdes(d) if seg.get("has_fdes", True) else None
            cids = read_cids(d, int(seg["tokens"])) if codec is not None else None
            acodes = (read_acodes(d, int(seg["tokens"]), codec.approx_bytes)
                      if codec is not None and codec.approx_bytes and seg.get("has_acodes")
                      else None)
            starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
            # records and texts are verified as copied: a compaction must not bless damage
            sums = read_checksums(d, seg["documents"]) if seg.get("has_checksums") else None
            texts = (TextReader(d, None if sums is None else sums[:, 1])
                     if seg["has_text"] else None)
            raw: Any = np.memmap(d / TOKENS_FILE, dtype=np.uint8, mode="r") if offs[-1] else None
            nbytes = np.asarray(record_nbytes(lengths, dim, dtype), np.int64)
            try:
                for lo in range(0, seg["documents"], bs):
                    rows = [r for r in range(lo, min(lo + bs, seg["documents"])) if not dead[r]]
                    if not rows:
                        continue
                    if sums is not None and raw is not None:
                        sel = np.asarray(rows, np.int64)
                        check_records(raw, offs[sel], nbytes[sel], sums[sel, 0], sel,
                                      str(d / TOKENS_FILE), ids)
                    coded = None
                    if cids is not None:
                        bcids = np.concatenate([cids[starts[r] : starts[r + 1]] for r in rows])
                        codes = None
                        if dtype in CODED_DTYPES:
                            row = codec.code_size
                            codes = np.concatenate([
                                np.asarray(raw[offs[r] : offs[r] + int(lengths[r]) * row])
                                for r in rows]).reshape(-1, row)
                        coded = (bcids, codes)
                        if acodes is not None:
                            coded = (bcids, codes, np.concatenate(
                                [acodes[starts[r] : starts[r + 1]] for r in rows]))
                    arrays = [
                        decode_record(raw[offs[r]: offs[r + 1]], int(lengths[r]), dim, dtype,
                                      codec=codec,
                                      cids=None if cids is None else cids[starts[r]:starts[r + 1]],
                                      acodes=None if acodes is None
                                      else acodes[starts[r]:starts[r + 1]])
                        for r in rows
                    ]
                    pooled = MultiVectors.from_arrays(arrays, dim=dim, dtype=arrays[0].dtype)
                    docs = [(ids[r], None if texts is None else texts.get(r)) for r in rows]
                    if fdes is None:
                        batch_fdes = _fde_batch(pooled.astype(np.float32), self.config)
                    else:
                        batch_fdes = np.asarray(fdes.get_orthogonal_selection(
                            (np.asarray(rows), slice(None))), dtype=np.float32)
                    yield docs, pooled, batch_fdes.astype(np.float16), coded
            finally:
                if texts is not None:
                    texts.close()
                del raw

    def close(self) -> None:
        """Release the lock."""
        if self._lock.is_locked:
            self._lock.release()

    def __enter__(self) -> IndexWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

