"""Streaming, crash-safe index build.

Per batch of documents: encode (or take the given vectors) -> pool -> document
FDEs -> append to the segment's files -> commit (fsync, then the progress file
``.build/progress.json`` is replaced atomically). Only one batch is ever in
memory. After the last batch the segment's first stage is built, every file is
checksummed and ``manifest.json`` is written last, atomically.

A build killed at any moment leaves the previous manifest (or none) in place;
``build_index(..., resume=True)`` truncates the files to the last committed
batch, skips the documents already indexed and finishes the build.
"""

from __future__ import annotations

import itertools
import os
import queue
import shutil
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from indexing._extras import finish_segment_extras
from indexing._first_stage_build import build_first_stage, segment_first_stage_kind
from indexing._metadata import MetadataStaging, normalise_metadata
from indexing._segment import FDE_DIR, SegmentWriter, read_ids
from mvr._codec import TokenCodec
from mvr._index_config import IndexConfig
from mvr._manifest import (
    BUILD_DIR,
    atomic_write_json,
    file_entry,
    fsync_dir,
    read_manifest,
    write_manifest,
)
from mvr._multivectors import MultiVectors
from mvr._progress import stage_messages
from mvr.errors import (
    ConfigError,
    DimensionMismatchError,
    EmptyInputError,
    EncoderMismatchError,
    IncompleteIndexError,
    IndexNotFoundError,
    InvalidVectorsError,
)
from mvr.format import CODED_DTYPES, FORMAT_VERSION, MANIFEST_NAME, SEGMENTS_DIR

__all__ = [
    "build_index", "Document", "BuildSession", "commit_manifest", "new_manifest", "codec_file_name",
    "commit_new_index", "train_token_codec", "previous_generation",
]

PROGRESS_FILE = "progress.json"
CODEC_TMP = "codec.faiss"  # the token codec of a build in progress (in .build/)


def _codec_dtype(config: IndexConfig) -> str:
    """The codec's residual width: the table's for res4/res8; 4 bits when only the
    centroid ids are used (float16 / int8 tables with the approximate stage)."""
    return config.table_dtype if config.table_dtype in CODED_DTYPES else "res4"


def codec_file_name(generation: int) -> str:
    return f"codec-{generation:06d}.faiss"


@dataclass
class Document:
    """One input document: an id, and a text, given token vectors, or both; optionally a
    flat metadata object (strings, numbers, booleans, lists of strings) to filter on."""

    id: str
    text: str | None = None
    vectors: np.ndarray | None = None
    metadata: dict[str, Any] | None = None


def _as_document(item: Any, position: int) -> Document:
    """Accept ``Document``, ``(id, text)``, ``(id, vectors)``, ``(id, text, vectors)``,
    ``(id, text, metadata_dict)`` or a dict with ``id``/``_id``, ``text``/``vectors`` and
    optionally ``metadata``."""
    if isinstance(item, Document):
        doc = item
    elif isinstance(item, dict):
        doc = Document(item.get("id", item.get("_id")), item.get("text"),  # type: ignore[arg-type]
                       item.get("vectors"), item.get("metadata"))
    elif isinstance(item, (tuple, list)) and len(item) in (2, 3):
        if len(item) == 3 and isinstance(item[2], dict):
            doc = Document(item[0], item[1], metadata=item[2])
        elif len(item) == 3:
            doc = Document(item[0], item[1], item[2])
        elif isinstance(item[1], str):
            doc = Document(item[0], item[1])
        else:
            doc = Document(item[0], None, item[1])
    else:
        raise InvalidVectorsError(
            f"document {position}: expected (id, text), (id, vectors), (id, text, vectors), a "
            f"dict or a Document, got {type(item).__name__}"
        )
    if isinstance(doc.id, (int, np.integer)) and not isinstance(doc.id, bool):
        doc.id = str(doc.id)
    if not isinstance(doc.id, str):
        raise InvalidVectorsError(f"document {position}: expected a str id, got {doc.id!r}")
    if doc.text is None and doc.vectors is None:
        raise InvalidVectorsError(f"document {doc.id!r}: expected a text or vectors, got neither")
    doc.metadata = normalise_metadata(doc.id, doc.metadata)
    return doc


def _batches(documents: Iterable[Any], size: int, start: int) -> Iterator[list[Document]]:
    it = itertools.islice(iter(documents), start, None)
    position = start
    while True:
        chunk = list(itertools.islice(it, size))
        if not chunk:
            return
        yield [_as_document(x, position + j) for j, x in enumerate(chunk)]
        position += len(chunk)


# ---------------------------------------------------------------------- stages
def _encode_batch(docs: list[Document], encoder: Any, dim: int | None) -> MultiVectors:
    """Token vectors of a batch: given vectors, else ``encoder.encode_documents`` of the texts."""
    need = [i for i, d in enumerate(docs) if d.vectors is None]
    encoded = None
    if need:
        if encoder is None:
            raise ConfigError(
                f"document {docs[need[0]].id!r} has a text but no vectors: pass an encoder"
            )
        encoded = encoder.encode_documents([docs[i].text for i in need])
    arrays: list[np.ndarray] = []
    j = 0
    for d in docs:
        if d.vectors is None:
            arrays.append(encoded[j])  # type: ignore[index]
            j += 1
        else:
            arrays.append(np.asarray(d.vectors))
    for d, a in zip(docs, arrays, strict=True):
        if a.ndim != 2 or a.shape[0] == 0:
            raise EmptyInputError(
                f"document {d.id!r}: expected token vectors of shape (t >= 1, dim), got {a.shape}"
            )
        if dim is not None and a.shape[1] != dim:
            raise DimensionMismatchError(
                f"document {d.id!r}: expected token dim {dim}, got {a.shape[1]}"
            )
    return MultiVectors.from_arrays(arrays, dtype=np.float32)


def _pool_batch(vectors: MultiVectors, config: IndexConfig) -> MultiVectors:
    """Token pooling (``indexing.pool_tokens``); pool_factor 1 keeps the vectors."""
    p = config.pooling
    if p.pool_factor == 1:
        return vectors
    from indexing._pooling import pool_tokens

    return pool_tokens(
        vectors, pool_factor=p.pool_factor, protected_tokens=p.protected_tokens,
        normalize=p.normalize,
    )


def _fde_batch(pooled: MultiVectors, config: IndexConfig) -> np.ndarray:
    """Document FDEs of the pooled vectors. Shape: (n, fde_dim) float32."""
    from mvr._fde import encode_document_fdes

    assert config.fde is not None  # resolved before the first batch
    return np.asarray(encode_document_fdes(pooled, config.fde), dtype=np.float32)


# ---------------------------------------------------------------------- manifest helpers
def new_manifest(encoder_identity: Any, dim: int, config: IndexConfig) -> dict[str, Any]:
    """An empty manifest (generation 0, no segments) for a resolved ``config``."""
    from mvr import __version__

    assert config.fde is not None
    return {
        "format_version": FORMAT_VERSION,
        "writer": {"name": "mvr", "version": __version__},
        "generation": 0,
        "encoder": encoder_identity,
        "dim": dim,
        "fde_dim": config.fde.output_dim,
        "config": config.to_dict(),
        "dtypes": {"table": config.table_dtype, "fde": "float16", "lengths": "<i8",
                   "cids": "<u2"},
        "codec": None,
        "counts": {"documents": 0, "live": 0, "deleted": 0, "tokens": 0},
        "segments": [],
        "tombstones": None,
        "files": {},
    }


def _segment_entries(root: Path, seg_name: str, skip: str | None = None) -> dict[str, Any]:
    """Size and SHA-256 of every file of the segment (but those under ``skip``)."""
    seg_dir = root / SEGMENTS_DIR / seg_name
    return {
        str(p.relative_to(root)): file_entry(root, str(p.relative_to(root)))
        for p in sorted(seg_dir.rglob("*"))
        if p.is_file() and not (skip and p.relative_to(seg_dir).parts[0] == skip)
    }


def commit_manifest(root: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Recount, write the manifest (the commit point), then remove the build progress and
    the segment folders and tombstone files the manifest no longer references.

    Old files are unlinked, never rewritten: a searcher opened before keeps reading its
    snapshot through the handles and maps it holds. Returns the committed manifest."""
    segs = manifest["segments"]
    deleted = manifest["counts"].get("deleted", 0)
    n = sum(s["documents"] for s in segs)
    manifest["counts"] = {
        "documents": n, "live": n - deleted, "deleted": deleted,
        "tokens": sum(s["tokens"] for s in segs),
    }
    write_manifest(root, manifest)
    shutil.rmtree(root / BUILD_DIR, ignore_errors=True)
    keep = {s["name"] for s in segs}
    seg_root = root / SEGMENTS_DIR
    if seg_root.is_dir():
        for p in seg_root.iterdir():
            if p.name not in keep:
                shutil.rmtree(p, ignore_errors=True)
        for seg in segs:  # format 2: FDEs only live until the segment's first stage exists
            if not seg.get("has_fdes", True):
                shutil.rmtree(seg_root / seg["name"] / FDE_DIR, ignore_errors=True)
    for p in root.glob("tombstones-*.json"):
        if p.name != manifest["tombstones"]:
            p.unlink(missing_ok=True)
    for p in root.glob("codec-*.faiss"):
        if p.name != manifest.get("codec"):
            p.unlink(missing_ok=True)
    return manifest


def train_token_codec(token_batches: list[np.ndarray], config: IndexConfig) -> TokenCodec:
    """The token codec of a build: trained on the pooled tokens of its first batches
    (``token_batches``, each shape (t_i, dim)), subsampled to ``codec_train_tokens`` with
    the first stage's seed. The distributed build trains on the same batches."""
    vectors = np.concatenate(token_batches).astype(np.float32)
    limit = config.codec_train_tokens
    if vectors.shape[0] > limit:
        rng = np.random.default_rng(config.first_stage.seed)
        vectors = vectors[np.sort(rng.choice(vectors.shape[0], limit, replace=False))]
    return TokenCodec.train(
        vectors, dtype=_codec_dtype(config), num_centroids=config.codec_centroids,
        seed=config.first_stage.seed, approx_pq=config.approx_pq,
        niter=config.codec_iterations,
    )


# ---------------------------------------------------------------------- the session
class _BackgroundWriter:
    """One thread that runs ``work(*batch)`` for submitted batches, in order.

    The queue holds one batch, so at most two batches are in memory (one being written,
    one waiting) while the caller computes the next. The first error stops the work;
    it is re-raised by the next :meth:`submit` or by :meth:`drain`.
    """

    def __init__(self, work: Any) -> None:
        self._work = work
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._failed = False
        self._thread = threading.Thread(target=self._run, name="mvr-index-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if not self._failed:  # after an error, later batches are dropped, never written
                try:
                    self._work(*item)
                except BaseException as e:  # handed to the caller's thread
                    self._error = e
                    self._failed = True

    def _raise(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def submit(self, *batch: Any) -> None:
        self._raise()
        self._queue.put(batch)

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def drain(self) -> None:
        self.stop()
        self._raise()



@dataclass
class BuildSession:
    """Writes one new segment in batches, committing progress after each."""

    root: Path
    kind: str  # "build" or "add"
    config: IndexConfig  # resolved
    encoder_identity: Any
    dim: int
    segment: str
    generation: int
    consumed: int = 0
    seen_ids: set[str] = field(default_factory=set)
    timings: dict[str, float] = field(default_factory=dict)
    writer: SegmentWriter | None = None
    codec: Any = None  # mvr._codec.TokenCodec: trained on the first batches, or the index's
    _background: _BackgroundWriter | None = None
    metadata: MetadataStaging | None = None  # documents' metadata until finish()
    _pending: list[tuple[Any, ...]] = field(default_factory=list)
    _pending_tokens: int = 0

    @property
    def build_dir(self) -> Path:
        return self.root / BUILD_DIR

    @property
    def seg_dir(self) -> Path:
        return self.root / SEGMENTS_DIR / self.segment

    def open(self, state: dict[str, Any] | None = None) -> None:
        assert self.config.fde is not None
        self.build_dir.mkdir(parents=True, exist_ok=True)
        if self.codec is None and self.config.uses_codec:  # a resumed build: its codec
            for p in (self.build_dir / CODEC_TMP, self.root / codec_file_name(self.generation)):
                if p.is_file():
                    self.codec = TokenCodec.load(p, _codec_dtype(self.config))
                    break
        self.writer = SegmentWriter(
            self.seg_dir, dim=self.dim, fde_dim=self.config.fde.output_dim,
            table_dtype=self.config.table_dtype, alignment=self.config.record_alignment,
            chunk_rows=self.config.batch_size, store_text=self.config.store_text,
            uses_codec=self.config.uses_codec, fde_dtype="float16",
            approx_bytes=self.config.approx_pq if self.config.uses_codec else 0,
        )
        self.writer.codec = self.codec
        self.metadata = MetadataStaging.open(
            self.build_dir, None if state is None else int(state["documents"]))
        if state is not None:
            self.writer.truncate_to(state)
            self.seen_ids.update(read_ids(self.seg_dir))
        else:
            self._save_progress(self.writer.commit(), phase="batches")

    def _save_progress(self, state: dict[str, Any], phase: str) -> None:
        atomic_write_json(self.build_dir / PROGRESS_FILE, {
            "kind": self.kind, "segment": self.segment, "generation": self.generation,
            "config": self.config.to_dict(), "encoder": self.encoder_identity, "dim": self.dim,
            "consumed": self.consumed, "state": state, "phase": phase,
        })

    def _tick(self, name: str, t0: float) -> float:
        t1 = time.perf_counter()
        self.timings[name] = self.timings.get(name, 0.0) + t1 - t0
        return t1

    def add_batch(self, docs: list[Document], encoder: Any, taken: set[str]) -> None:
        """Encode, pool and FDE one batch here; append and commit it on the writer thread
        (which overlaps the disk work with the next batch's computation)."""
        assert self.writer is not None
        for d in docs:
            if d.id in self.seen_ids or d.id in taken:
                raise ConfigError(f"duplicate document id {d.id!r}: expected unique ids")
            self.seen_ids.add(d.id)
        assert self.metadata is not None
        self.metadata.add_documents(docs)  # checked and fsynced ahead of the batch's vectors
        t = time.perf_counter()
        vectors = _encode_batch(docs, encoder, self.dim)
        t = self._tick("encode", t)
        pooled = _pool_batch(vectors, self.config)
        t = self._tick("pool", t)
        fdes = _fde_batch(pooled, self.config).astype(np.float16)
        t = self._tick("fde", t)
        batch = ([d.id for d in docs], [d.text for d in docs], pooled, fdes)
        if self.config.uses_codec and self.codec is None:  # held until the codec is trained
            self._pending.append(batch)
            self._pending_tokens += pooled.total_tokens
            if self._pending_tokens >= self.config.codec_train_tokens:
                self._train_codec()
            return
        self._submit(batch)

    def _submit(self, batch: tuple[Any, ...]) -> None:
        if self._background is None:
            self._background = _BackgroundWriter(self._write_batch)
        self._background.submit(*batch)

    def _train_codec(self) -> None:
        """Train the token codec on the held batches' tokens, save it in the build folder
        (a resumed build reloads it), then write the held batches."""
        t = time.perf_counter()
        self.codec = train_token_codec([b[2].vectors for b in self._pending], self.config)
        self.codec.save(self.build_dir / CODEC_TMP)
        assert self.writer is not None
        self.writer.codec = self.codec
        self._tick("codec_train", t)
        pending, self._pending, self._pending_tokens = self._pending, [], 0
        for batch in pending:
            self._submit(batch)

    def _write_batch(
        self, ids: list[str], texts: list[str | None], pooled: MultiVectors, fdes: np.ndarray,
        coded: Any = None,
    ) -> None:
        assert self.writer is not None
        t = time.perf_counter()
        self.writer.append(ids, texts, pooled, fdes, coded)
        t = self._tick("write", t)
        state = self.writer.commit()
        self.consumed += len(ids)
        self._save_progress(state, phase="batches")
        self._tick("commit", t)

    def flush(self) -> None:
        """Wait until every submitted batch is committed; re-raise a writer error."""
        if self._pending:
            self._train_codec()
        if self._background is not None:
            background, self._background = self._background, None
            background.drain()

    def finish(self) -> dict[str, Any]:
        """Close the segment, build its first stage; return its manifest entry and files."""
        assert self.writer is not None
        self.flush()
        n, tokens = self.writer.num_documents, self.writer.num_tokens
        self.writer.close()
        t = time.perf_counter()
        finish_segment_extras(self.metadata, self.seg_dir, n)  # metadata.arrow, bm25/
        t = self._tick("metadata_bm25", t)
        kind = segment_first_stage_kind(self.config.first_stage, n)
        build_first_stage(self.seg_dir, self.config.first_stage, kind)
        # the faiss index holds what it needs: the FDEs are left out of the manifest and
        # removed once it is committed (a build resumed before that still finds them)
        drop_fdes = kind != "exact" and not self.config.keep_fdes
        t = self._tick("first_stage", t)
        files = _segment_entries(self.root, self.segment, skip=FDE_DIR if drop_fdes else None)
        self._tick("checksums", t)
        entry = {
            "name": self.segment, "documents": n, "tokens": tokens, "first_stage": kind,
            "has_text": self.config.store_text, "has_fdes": not drop_fdes,
            "has_cids": self.codec is not None, "has_checksums": self.writer.has_checksums,
        }
        if self.writer.approx_bytes:
            entry["has_acodes"] = True
        return {"entry": entry, "files": files}

    def close(self) -> None:
        """Stop the writer thread (dropping a pending error: the caller is already handling
        one) and close the segment's files. Idempotent."""
        if self._background is not None:
            background, self._background = self._background, None
            background.stop()
        if self.writer is not None:
            self.writer.close()

    def discard_progress(self) -> None:
        shutil.rmtree(self.build_dir, ignore_errors=True)


def _read_progress(root: Path) -> dict[str, Any] | None:
    from mvr._json_files import read_json

    p = root / BUILD_DIR / PROGRESS_FILE
    if not p.is_file():
        return None
    return read_json(p, required=("kind", "segment", "generation", "config", "encoder", "dim",
                                  "consumed", "state"))


def _build_committed(root: Path) -> bool:
    """Whether the build whose progress is at ``root`` was committed (a manifest of its
    generation or later exists)."""
    progress = _read_progress(root)
    if progress is None or not (root / MANIFEST_NAME).is_file():
        return False
    return int(read_manifest(root)["generation"]) >= int(progress["generation"])


def _check_resume(progress: dict[str, Any], config: IndexConfig | None, identity: Any) -> None:
    if progress["kind"] != "build":
        raise ConfigError(
            f"cannot resume: the interrupted operation is {progress['kind']!r}, expected 'build'"
        )
    if progress["encoder"] != identity:
        raise EncoderMismatchError(
            f"cannot resume with another encoder: the interrupted build used "
            f"{progress['encoder']!r}, got {identity!r}"
        )
    if config is not None:
        # compared resolved (the recording is: fde fixed, approx_pq a divisor of the dim);
        # a config without fde compares its other fields only
        given = config.resolved(progress["dim"]).to_dict()
        recorded_cmp = IndexConfig.from_dict(progress["config"]).to_dict()
        if config.fde is None:
            given, recorded_cmp = given | {"fde": None}, recorded_cmp | {"fde": None}
        if given != recorded_cmp:
            raise ConfigError(
                f"cannot resume with another config: expected {recorded_cmp}, got {given}"
            )


def previous_generation(root: Path, overwrite: bool, resuming: bool = False) -> int:
    """The generation of the index a new build at ``root`` replaces (0: none). An index
    or an interrupted build there is refused unless ``overwrite``; ``resuming`` (a resume
    that found no progress record) discards an interrupted build too: it was killed
    before it recorded anything to continue (e.g. between creating ``.build/`` and its
    first batch)."""
    try:
        old = read_manifest(root)
    except IndexNotFoundError:
        old = None
    except IncompleteIndexError:
        if not (overwrite or resuming):
            raise  # its message says how to resume
        old = None  # the interrupted build is discarded
    if old is not None and not overwrite:
        raise ConfigError(
            f"{root} already holds an index (generation {old['generation']}); pass overwrite=True "
            "to replace it, or use IndexWriter.add"
        )
    return int(old["generation"]) if old else 0


def _open_session(
    root: Path, documents_dim: int | None, encoder: Any, config: IndexConfig | None,
    resume: bool, overwrite: bool,
) -> BuildSession:
    identity = None if encoder is None else encoder.identity
    progress = _read_progress(root) if resume else None
    if progress is not None:
        _check_resume(progress, config, identity)
        cfg = IndexConfig.from_dict(progress["config"])
        session = BuildSession(
            root, "build", cfg, identity, progress["dim"], progress["segment"],
            progress["generation"], consumed=progress["consumed"],
        )
        return _opened(session, progress["state"])
    previous = previous_generation(root, overwrite, resuming=resume)
    shutil.rmtree(root / BUILD_DIR, ignore_errors=True)
    dim = encoder.dim if encoder is not None else documents_dim
    if dim is None:
        raise ConfigError("cannot tell the token dim: pass an encoder or documents with vectors")
    cfg = (config or IndexConfig()).resolved(int(dim))
    generation = previous + 1
    seg = f"seg-{generation:06d}"
    shutil.rmtree(root / SEGMENTS_DIR / seg, ignore_errors=True)
    session = BuildSession(root, "build", cfg, identity, int(dim), seg, generation)
    return _opened(session, None)


def _opened(session: BuildSession, state: dict[str, Any] | None) -> BuildSession:
    """``session.open(state)``; the files it opened are closed again if that fails (e.g.
    its first progress record hits a full disk)."""
    try:
        session.open(state)
    except BaseException:
        session.close()
        raise
    return session


def build_index(
    path: str | Path,
    documents: Iterable[Any],
    encoder: Any = None,
    config: IndexConfig | None = None,
    *,
    resume: bool = False,
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Build an index at ``path`` from a stream of documents.

    Parameters
    ----------
    path : str or Path
        Index directory (created).
    documents : iterable
        ``(id, text)`` pairs (encoded with ``encoder``), ``(id, vectors)`` pairs with
        vectors of shape (t, dim) (precomputed; no encoder needed), ``(id, text, vectors)``,
        dicts with ``id`` and ``text``/``vectors``, or :class:`Document`. Consumed in
        batches of ``config.batch_size``; never held whole.
    encoder : mvr.Encoder, optional
        Encodes texts; its ``identity`` is recorded so that searchers encode queries
        with the same model.
    config : IndexConfig, optional
        Build settings (default ``IndexConfig()``, FDE derived from the token dim).
    resume : bool
        Continue an interrupted build at ``path`` (pass the same documents, encoder and
        config): files are truncated to the last committed batch and the documents
        already indexed are skipped. Without an interrupted build, builds from scratch.
    progress : bool
        Show a tqdm bar (documents/s, ETA).
    overwrite : bool
        Replace an existing index at ``path`` (the old one stays readable until the new
        manifest is committed).

    Returns
    -------
    dict
        The committed manifest, plus ``"build_timings"`` (seconds per stage).
    """
    from filelock import FileLock, Timeout
    from tqdm.auto import tqdm

    from mvr.errors import IndexLockedError
    from mvr.format import LOCK_NAME

    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(root / LOCK_NAME))
    try:
        lock.acquire(timeout=0)
    except Timeout as e:
        raise IndexLockedError(f"{root}: another writer holds {LOCK_NAME}") from e
    try:
        if resume and _build_committed(root):
            # killed after its commit, before .build/ went: the build is done, and its
            # segment committed (never reopened for writing: a reader may map its files)
            shutil.rmtree(root / BUILD_DIR, ignore_errors=True)
            return {**read_manifest(root), "build_timings": {"total": 0.0}}
        docs_iter = iter(documents)
        first, docs_iter = _peek(docs_iter)
        first_dim = None
        if first is None and not (resume and _read_progress(root) is not None):
            raise EmptyInputError(f"no documents to index at {root}: got an empty stream")
        if first is not None:
            d0 = _as_document(first, 0)
            first_dim = None if d0.vectors is None else int(np.asarray(d0.vectors).shape[-1])
        session = _open_session(root, first_dim, encoder, config, resume, overwrite)
        total = len(documents) if hasattr(documents, "__len__") else None  # type: ignore[arg-type]
        bar = tqdm(total=total, initial=session.consumed, unit="doc", desc="indexing",
                   disable=not progress, smoothing=0.1)
        t0 = time.perf_counter()
        try:
            with stage_messages(encoder), bar:  # one bar; warnings summed after it
                for batch in _batches(docs_iter, session.config.batch_size, session.consumed):
                    session.add_batch(batch, encoder, set())
                    bar.update(len(batch))
            session.flush()
            if session.writer is not None and session.writer.num_documents == 0:
                session.close()
                session.discard_progress()
                shutil.rmtree(session.seg_dir, ignore_errors=True)
                raise EmptyInputError(f"no documents to index at {root}: got an empty stream")
            done = session.finish()
        finally:
            session.close()
        manifest = commit_new_index(
            root, [done], identity=session.encoder_identity, dim=session.dim,
            config=session.config, generation=session.generation,
            encoder_source=_encoder_source(encoder), has_codec=session.codec is not None,
        )
        session.timings["total"] = time.perf_counter() - t0
        manifest["build_timings"] = dict(session.timings)
        return manifest
    finally:
        lock.release()


def commit_new_index(
    root: Path, segments: list[dict[str, Any]], *, identity: Any, dim: int,
    config: IndexConfig, generation: int, encoder_source: dict[str, Any] | None,
    has_codec: bool,
) -> dict[str, Any]:
    """Commit a new index of finished ``segments`` (each ``{"entry", "files"}`` from
    :meth:`BuildSession.finish`, in row order): the build's codec moves from the build
    folder to ``codec-<generation>.faiss``, then one manifest is written atomically."""
    manifest = new_manifest(identity, dim, config)
    manifest["encoder_source"] = encoder_source  # how to load the encoder again
    manifest["generation"] = generation
    manifest["segments"] = [done["entry"] for done in segments]
    manifest["files"] = {k: v for done in segments for k, v in done["files"].items()}
    if has_codec:
        name = codec_file_name(generation)
        if (root / BUILD_DIR / CODEC_TMP).is_file():  # else moved by the interrupted run
            os.replace(root / BUILD_DIR / CODEC_TMP, root / name)
            fsync_dir(root)
        manifest["codec"] = name
        manifest["files"][name] = file_entry(root, name)
    return dict(commit_manifest(root, manifest))


def _encoder_source(encoder: Any) -> dict[str, Any] | None:
    from encoders._source import encoder_source

    return encoder_source(encoder)


def _peek(it: Iterator[Any]) -> tuple[Any, Iterator[Any]]:
    try:
        first = next(it)
    except StopIteration:
        return None, iter(())
    return first, itertools.chain([first], it)

