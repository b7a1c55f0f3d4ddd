"""The searcher: query FDEs -> first stage top-N -> fetch tokens -> exact MaxSim -> top-k.

:meth:`Searcher.open` reads and checks the manifest (format version, every file's
size and, by default, SHA-256), loads ids, token counts and the first stage, and
opens the re-ranking table through a :class:`mvr.TokenStore` (``mode``). What it
loads is the snapshot of that manifest: writers never modify files in place, so
a later ``add``/``delete``/``compact`` does not change what an open searcher sees.

The search path is split into stages, each a method, so that a store can add a
coarse pass and prefetching between them::

    _query_vectors -> _query_fdes -> _first_stage -> [_approx] -> _fetch -> _score -> _top_k

``_approx`` (format 2 indexes with centroid ids): the first stage's N candidates are
scored by approximate MaxSim over their tokens' centroid ids (RAM only, no token
vectors read) and the best ``rerank_candidates`` go on to the exact re-rank.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from indexing._bm25 import BM25_DIR
from indexing._metadata import METADATA_FILE
from mvr._segments import (
    FDE_DIR,
    FIRST_STAGE_FILE,
    TEXTS_FILE,
    TextReader,
    open_fdes,
    read_acodes,
    read_checksums,
    read_cids,
    read_ids,
    read_lengths,
    record_offsets,
)
from mvr._config import FDEConfig
from mvr._index_config import IndexConfig
from mvr._manifest import read_manifest, verify_files
from mvr._multivectors import MultiVectors
from mvr._protocols import SearchResults
from mvr.errors import (
    ConfigError,
    CorruptIndexError,
    DimensionMismatchError,
    DocumentNotFoundError,
    EmptyInputError,
    EncoderMismatchError,
    InvalidVectorsError,
)
from mvr.format import SEGMENTS_DIR, TOKENS_FILE
from serving._first_stage import ExactFirstStage, SegmentedFirstStage, top_n
from serving._held_files import HeldFiles, lazy_files
from serving._stages import check_k as _check_k
from serving._stages import release_freed_memory, search_depths
from serving._stages import tick as _tick
from serving._prefetch import StageTimer, attach_to_searcher, search_stream
from serving._stores import TableLayout, make_store

__all__ = ["Searcher"]

_EXHAUSTIVE_BLOCK = 4096
_OPEN_ATTEMPTS = 8  # opens retried when a commit replaced the snapshot meanwhile
_SMALL_FILE = 1 << 20  # files up to this size are hashed at every open
_RERANK_BYTES = 64 << 20  # candidate token vectors fetched at once per query group


def _read_whole(manifest: dict[str, Any], mode: str) -> set[str]:
    """The files an open reads whole (so hashing them costs no extra read), whatever their
    size: all but the table (unless ``mode`` is memory), the texts, metadata and BM25
    (checked as they are read or first used) and the FDEs of faiss segments (unread)."""
    exact = {s["name"] for s in manifest["segments"] if s["first_stage"] == "exact"}
    out = set()
    for rel in manifest["files"]:
        parts = rel.split("/")  # segments/<name>/<file or folder>/...
        if parts[0] == SEGMENTS_DIR and len(parts) > 2 and (
            parts[2] in (TEXTS_FILE, METADATA_FILE, BM25_DIR)
            or (parts[2] == TOKENS_FILE and mode != "memory")
            or (parts[2] == FDE_DIR and parts[1] not in exact)
        ):
            continue
        out.add(rel)
    return out


class Searcher:
    """Search one index snapshot. Use :meth:`open`; thread-safe for concurrent searches."""

    path: Path
    manifest: dict[str, Any]
    config: IndexConfig
    fde_config: FDEConfig
    _query_fde_config: FDEConfig
    mode: str
    store: Any
    first_stage: SegmentedFirstStage
    ids: list[str]
    allowed: np.ndarray
    _lengths: np.ndarray
    _seg_starts: np.ndarray
    _id_to_row: dict[str, int]
    _live_rows: np.ndarray
    _filter: np.ndarray | None

    def __init__(self) -> None:  # use Searcher.open
        self._lock = threading.Lock()  # counters only: held for microseconds
        self._encoder_lock = threading.Lock()  # held for a whole (lazy) model load
        self._encoder: Any = None
        self._stats: dict[str, float] = {}
        self._texts: list[TextReader | None] = []
        self.codec: Any = None  # mvr._codec.TokenCodec (format 2)
        self._cids: np.ndarray | None = None  # centroid id of every token, global order
        self._acodes: np.ndarray | None = None  # approximate code of every token (or None)
        self._tok_starts: np.ndarray | None = None
        self._lists: tuple[np.ndarray, np.ndarray] | None = None  # centroid inverted lists
        self._tokens: Any = None  # serving._token_candidates.TokenCandidates (or None)
        self._stages = StageTimer()  # per-call stage latencies (percentiles in stats())
        self._prefetcher: Any = None

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        encoder: Any = None,
        mode: str = "memory",
        verify: bool | None = None,
        **store_options: Any,
    ) -> Searcher:
        """Open the index at ``path``.

        Parameters
        ----------
        path : str or Path
            Index directory.
        encoder : mvr.Encoder, optional
            Encodes text queries; must have the identity recorded in the manifest.
            Default: loaded lazily with ``encoders.load`` on the first text query.
        mode : {"memory", "mmap", "ssd"}
            Where the re-ranking table is read from.
        verify : bool, optional
            Sizes of every file are always checked. None (default): also the SHA-256 of
            the small files (under 1 MiB) and of every file that the open reads whole
            whatever its size (ids, lengths, centroid ids, first stages, codec,
            tombstones, checksums; the table too in memory mode); the table and texts,
            read piecemeal, are checked record by record as they are read
            (``checksums.bin``), metadata and BM25 files when first used. ``verify=True``
            (``mvr verify``): every file's SHA-256 at open. False: sizes only.
        **store_options
            Passed to the SSD store.

        Raises
        ------
        IndexNotFoundError, IncompleteIndexError, FormatVersionError, CorruptIndexError,
        ChecksumMismatchError, EncoderMismatchError
        """
        root = Path(path)
        manifest = read_manifest(root)
        for attempt in range(_OPEN_ATTEMPTS):
            try:
                return cls._open_snapshot(root, manifest, encoder, mode, verify, store_options)
            except Exception as e:
                latest = read_manifest(root)
                if latest == manifest:  # nothing was committed underneath: a real error
                    raise
                # a writer committed (and unlinked files of this snapshot) meanwhile: again
                manifest, error = latest, e
                time.sleep(0.01 * attempt)
        raise CorruptIndexError(
            f"{root}: the index changed under each of {_OPEN_ATTEMPTS} attempts to open it "
            f"(now at generation {manifest['generation']}); last error: {error}"
        ) from error

    @classmethod
    def _open_snapshot(
        cls, root: Path, manifest: dict[str, Any], encoder: Any, mode: str, verify: bool,
        store_options: dict[str, Any],
    ) -> Searcher:
        """Open the snapshot ``manifest``: every file a search needs is read, opened or
        mapped here, never later, so that it keeps serving after a commit unlinks them."""
        self = cls()
        self.path = root
        self.manifest = manifest
        verify_files(self.path, self.manifest,
                     checksums=_SMALL_FILE if verify is None else bool(verify),
                     always=_read_whole(self.manifest, mode) if verify is None else ())
        self.config = IndexConfig.from_dict(self.manifest["config"])
        if self.config.fde is None:
            raise CorruptIndexError(f"{self.path}: manifest config has no resolved fde")
        self.fde_config = self.config.fde
        # queries are SUMmed per partition and never filled (MUVERA reference)
        self._query_fde_config = dataclasses.replace(self.fde_config, fill_empty_partitions=False)
        if encoder is not None:
            self._check_encoder(encoder)
            self._encoder = encoder
        self.mode = mode
        self.store = None
        try:
            # metadata and BM25 are loaded on first use: held now, so that a compaction
            # meanwhile cannot unlink them from under this snapshot (serving._held_files)
            self._held = HeldFiles(self.path, lazy_files(self.manifest))
            self._load_rows()
            self._load_codec()
            self.first_stage = self._load_first_stage()
            self.store = make_store(mode, self._layout(), **store_options)
            self._prefetcher = attach_to_searcher(self)  # SSD mode: coarse pass + prefetch
        except BaseException:
            self.close()
            raise
        return self

    def _segments(self) -> list[dict[str, Any]]:
        return list(self.manifest["segments"])

    def _seg_dir(self, seg: dict[str, Any]) -> Path:
        return self.path / SEGMENTS_DIR / seg["name"]

    def _load_rows(self) -> None:
        ids: list[str] = []
        lengths = []
        hashes, hashed = [], []
        for seg in self._segments():
            seg_ids = read_ids(self._seg_dir(seg))
            seg_len = read_lengths(self._seg_dir(seg))
            if len(seg_ids) != seg["documents"] or len(seg_len) != seg["documents"]:
                raise CorruptIndexError(
                    f"segment {seg['name']}: expected {seg['documents']} documents, got "
                    f"{len(seg_ids)} ids and {len(seg_len)} lengths"
                )
            ids.extend(seg_ids)
            lengths.append(seg_len)
            sums = (read_checksums(self._seg_dir(seg), seg["documents"])
                    if seg.get("has_checksums") else None)
            hashes.append(np.zeros(len(seg_ids), np.uint64) if sums is None else sums[:, 0])
            hashed.append(np.full(len(seg_ids), sums is not None))
            self._texts.append(TextReader(self._seg_dir(seg), None if sums is None else sums[:, 1])
                               if seg["has_text"] else None)
        self.ids = ids
        any_hashed = any(h.any() for h in hashed)
        self._record_hashes = np.concatenate(hashes) if any_hashed else None
        self._hashed = np.concatenate(hashed) if any_hashed else None
        self._lengths = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
        starts = np.cumsum([0] + [s["documents"] for s in self._segments()])
        self._seg_starts = starts.astype(np.int64)
        self.allowed = np.ones(len(ids), dtype=bool)
        names = {s["name"]: i for i, s in enumerate(self._segments())}
        tomb = self.manifest["tombstones"]
        if tomb is not None:
            from mvr._json_files import read_tombstones

            docs = {s["name"]: int(s["documents"]) for s in self._segments()}
            for name, rows in read_tombstones(self.path / tomb, docs).items():
                self.allowed[starts[names[name]] + np.asarray(rows, dtype=np.int64)] = False
        self._id_to_row = {ids[r]: r for r in np.flatnonzero(self.allowed).tolist()}
        self._live_rows = np.flatnonzero(self.allowed)
        self._filter = None if self.allowed.all() else self.allowed

    def _load_codec(self) -> None:
        """Format 2: the token codec and every token's centroid id (held in RAM)."""
        name = self.manifest.get("codec")
        if name is None:
            return
        from mvr._codec import TokenCodec
        from mvr.format import CODED_DTYPES

        dtype = self.config.table_dtype if self.config.table_dtype in CODED_DTYPES else "res4"
        self.codec = TokenCodec.load(self.path / name, dtype)
        if self.codec.dim != self.dim:
            raise CorruptIndexError(
                f"{self.path / name}: expected a codec of dim {self.dim}, got {self.codec.dim}"
            )
        parts = []
        for seg in self._segments():
            if not seg.get("has_cids"):
                raise CorruptIndexError(f"segment {seg['name']}: expected centroid ids (the "
                                        "index has a codec), the manifest records none")
            parts.append(read_cids(self._seg_dir(seg), int(seg["tokens"])))
        self._cids = np.concatenate(parts) if parts else np.zeros(0, np.uint16)
        if self._cids.size and int(self._cids.max()) >= self.codec.num_centroids:
            raise CorruptIndexError(f"{self.path}: centroid ids expected < "
                                    f"{self.codec.num_centroids}, got {int(self._cids.max())}")
        starts = np.zeros(len(self._lengths) + 1, dtype=np.int64)
        np.cumsum(self._lengths, out=starts[1:])
        self._tok_starts = starts
        # approximate codes: used when every segment has them (an index extended by an older
        # version, or built with approx_pq=0, falls back to centroid ids alone)
        m = self.codec.approx_bytes
        if m and self._segments() and all(seg.get("has_acodes") for seg in self._segments()):
            parts = [read_acodes(self._seg_dir(seg), int(seg["tokens"]), m)
                     for seg in self._segments()]
            self._acodes = parts[0] if len(parts) == 1 else np.concatenate(parts)  # no copy of 1
        elif self.codec.refined and self._segments():
            raise CorruptIndexError(f"{self.path}: a {self.codec.dtype} table needs approximate "
                                    "codes in every segment, the manifest records some without")
        from serving._token_candidates import open_extra_candidates

        self._tokens, self._lists = open_extra_candidates(
            self.config, self.codec, self._cids, self._acodes, starts)

    def _layout(self) -> TableLayout:
        offs, segs, paths, sizes = [], [], [], []
        for i, seg in enumerate(self._segments()):
            lo, hi = self._seg_starts[i], self._seg_starts[i + 1]
            ro = record_offsets(self._lengths[lo:hi], self.dim, self.config.table_dtype,
                                self.config.record_alignment)
            offs.append(ro[:-1])
            segs.append(np.full(hi - lo, i, dtype=np.int32))
            rel = f"{SEGMENTS_DIR}/{seg['name']}/{TOKENS_FILE}"
            paths.append(self.path / rel)
            sizes.append(int(self.manifest["files"][rel]["size"]))
        return TableLayout(
            paths=paths, dim=self.dim, dtype=self.config.table_dtype,
            alignment=self.config.record_alignment, lengths=self._lengths,
            offsets=np.concatenate(offs) if offs else np.zeros(0, np.int64),
            segment=np.concatenate(segs) if segs else np.zeros(0, np.int32), file_sizes=sizes,
            codec=self.codec, cids=self._cids, tok_starts=self._tok_starts, acodes=self._acodes,
            record_hashes=self._record_hashes, hashed=self._hashed,
        )

    def _load_first_stage(self) -> SegmentedFirstStage:
        """Consecutive exact segments share one FDE matrix; faiss segments load their file."""
        from serving._first_stage_faiss import FaissFirstStage

        parts: list[tuple[int, Any]] = []
        pending: list[np.ndarray] = []
        pending_base = 0
        for i, seg in enumerate(self._segments()):
            base = int(self._seg_starts[i])
            if seg["first_stage"] == "exact":
                if not seg.get("has_fdes", True):
                    raise CorruptIndexError(
                        f"segment {seg['name']}: an exact first stage needs its FDEs, "
                        "the manifest records none"
                    )
                if not pending:
                    pending_base = base
                pending.append(np.asarray(open_fdes(self._seg_dir(seg))[:], dtype=np.float32))
                continue
            if pending:
                parts.append((pending_base, ExactFirstStage(np.concatenate(pending))))
                pending = []
            parts.append((base, FaissFirstStage(
                self._seg_dir(seg) / FIRST_STAGE_FILE, seg["first_stage"], self.config.first_stage
            )))
        if pending:
            parts.append((pending_base, ExactFirstStage(np.concatenate(pending))))
        return SegmentedFirstStage(parts, len(self.ids))

    # ------------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def num_documents(self) -> int:
        """Live (not deleted) documents."""
        return int(self._live_rows.shape[0])

    @property
    def encoder(self) -> Any:
        """The index's encoder, loaded on first use from the manifest identity (under its
        own lock, so that counters and stats() never wait on a model load)."""
        with self._encoder_lock:
            if self._encoder is None:
                self._encoder = self._load_encoder()
            return self._encoder

    def _load_encoder(self) -> Any:
        """The encoder recorded in the manifest (``encoder_source``: the checkpoint
        directory and weights hash; see :mod:`encoders._source`)."""
        identity = self.manifest["encoder"]
        if identity is None:
            raise ConfigError(
                f"{self.path}: the index was built from vectors without an encoder; pass "
                "encoder= to Searcher.open to search texts, or search with MultiVectors"
            )
        from encoders._source import load_index_encoder
        from mvr.errors import ModelFileNotFoundError, MVRError

        try:
            enc = load_index_encoder(identity, self.manifest.get("encoder_source"),
                                     where=f"index {self.path}")
        except (EncoderMismatchError, ModelFileNotFoundError):
            raise
        except (MVRError, OSError) as e:
            raise EncoderMismatchError(
                f"cannot load the encoder {identity.get('name')!r} recorded in "
                f"{self.path}/manifest.json ({e}); pass encoder= to Searcher.open"
            ) from e
        self._check_encoder(enc)
        return enc

    def _check_encoder(self, encoder: Any) -> None:
        expected = self.manifest["encoder"]
        if encoder.dim != self.dim:
            raise EncoderMismatchError(
                f"encoder dim: expected {self.dim} (index {self.path}), got {encoder.dim}"
            )
        if expected is not None and encoder.identity != expected:
            diff = sorted(k for k in set(expected) | set(encoder.identity)
                          if expected.get(k) != encoder.identity.get(k))
            raise EncoderMismatchError(
                f"encoder identity differs from the one index {self.path} was built with "
                f"(keys {diff}): expected {expected!r}, got {encoder.identity!r}"
            )

    # ------------------------------------------------------------------ stages
    def _query_vectors(self, queries: Any) -> MultiVectors:
        if isinstance(queries, str):
            queries = [queries]
        if isinstance(queries, MultiVectors):
            mv = queries
        elif isinstance(queries, Sequence) and queries and all(isinstance(q, str) for q in queries):
            mv = self.encoder.encode_queries(list(queries))
        elif isinstance(queries, Sequence) and len(queries) == 0:
            raise EmptyInputError("queries: expected at least one query, got none")
        else:
            from mvr._multivectors import as_multivectors

            try:
                mv = as_multivectors(queries, dim=self.dim, name="queries")
            except InvalidVectorsError as e:
                raise InvalidVectorsError(
                    f"queries: expected a list of texts or MultiVectors; {e}"
                ) from e
        if mv.dim != self.dim:
            raise DimensionMismatchError(f"queries: expected dim {self.dim}, got {mv.dim}")
        mv.require_nonempty("query")
        return mv

    def _query_fdes(self, q: MultiVectors) -> np.ndarray:
        from mvr._fde import encode_query_fdes

        return np.asarray(encode_query_fdes(q.astype(np.float32), self._query_fde_config), np.float32)

    def _first_stage(self, qf: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        return self.first_stage.search(qf, n, allowed=self._filter)

    def _fetch(self, rows: np.ndarray, prefetched: dict[int, Any] | None = None) -> MultiVectors:
        if prefetched is None:
            return self.store.get(rows)
        return self.store.get(rows, prefetched=prefetched)

    def _prefetch(self, qf: np.ndarray, n: int) -> dict[int, Any] | None:
        """SSD mode: start reading the coarse pass's top rows (None in other modes)."""
        if self._prefetcher is None:
            return None
        return self._prefetcher.start(qf, n, allowed=self._filter)

    def _score(self, q: MultiVectors, docs: MultiVectors, cand_offsets: np.ndarray) -> np.ndarray:
        from mvr._maxsim import maxsim_candidates

        return np.asarray(maxsim_candidates(q, docs, cand_offsets), dtype=np.float32)

    def _top_k(
        self, flat_scores: np.ndarray, flat_rows: np.ndarray, cand_offsets: np.ndarray, k: int
    ) -> tuple[list[list[str]], list[np.ndarray]]:
        ids, scores = [], []
        for i in range(len(cand_offsets) - 1):
            lo, hi = cand_offsets[i], cand_offsets[i + 1]
            s, r = top_n(flat_scores[None, lo:hi], k, flat_rows[lo:hi])
            keep = r[0] >= 0
            ids.append([self.ids[j] for j in r[0][keep].tolist()])
            scores.append(s[0][keep])
        return ids, scores

    def _rerank_rows(
        self, q: MultiVectors, rows: np.ndarray, k: int, timings: dict[str, float],
        prefetched: dict[int, Any] | None = None,
    ) -> SearchResults:
        """Exact MaxSim of each query against its candidate rows (shape (n_q, N), -1 pads).

        Queries are re-ranked in groups whose candidates' token vectors fit in
        ``_RERANK_BYTES``, so a large batch never materialises all its candidates at once.
        ``prefetched`` (SSD mode) maps rows to reads already started by the coarse pass.
        """
        ids: list[list[str]] = []
        scores: list[np.ndarray] = []
        for lo, hi in self._rerank_groups(rows):
            t = time.perf_counter()
            sub = rows[lo:hi]
            valid = sub >= 0
            flat_rows = sub[valid]
            cand_offsets = np.zeros(hi - lo + 1, dtype=np.int64)
            np.cumsum(valid.sum(axis=1), out=cand_offsets[1:])
            docs = self._fetch(flat_rows, prefetched)
            t = _tick(timings, "fetch", t)
            flat_scores = self._score(q[lo:hi], docs, cand_offsets)
            t = _tick(timings, "maxsim", t)
            g_ids, g_scores = self._top_k(flat_scores, flat_rows, cand_offsets, k)
            ids += g_ids
            scores += g_scores
            _tick(timings, "top_k", t)
        return SearchResults(ids=ids, scores=scores, timings=timings)

    def _rerank_groups(self, rows: np.ndarray) -> list[tuple[int, int]]:
        """Consecutive query ranges whose candidate vectors stay under ``_RERANK_BYTES``."""
        per_token = self.dim * (2 if self.config.table_dtype == "float16" else 4)
        lens = np.where(rows >= 0, self._lengths[np.maximum(rows, 0)], 0)
        nbytes = lens.sum(axis=1) * per_token
        groups, start, acc = [], 0, 0
        for i, b in enumerate(nbytes.tolist()):
            if i > start and acc + b > _RERANK_BYTES:
                groups.append((start, i))
                start, acc = i, 0
            acc += b
        groups.append((start, len(nbytes)))
        return groups

    # ------------------------------------------------------------------ public API
    def search(
        self, queries: Any, *, k: int = 10, candidates: int | None = None, rerank: bool = True,
        rerank_candidates: int | None = None, filter: Any = None, hybrid: Any = None,
    ) -> SearchResults:
        """Top-``k`` documents per query.

        Parameters
        ----------
        queries : list of str or MultiVectors
            Texts (encoded with the index's encoder) or query token vectors
            (shape: (total_tokens, dim) + offsets).
        k : int
            Results per query.
        candidates : int, optional
            First-stage candidates N per query (default from the index config, at
            least ``k``).
        rerank : bool
            False returns the first-stage ranking (FDE inner products).
        rerank_candidates : int, optional
            Indexes with centroid ids (format 2): of the N candidates, the approximate
            MaxSim keeps this many for the exact re-rank (default: the index config's
            ``default_rerank``; at least ``k``; >= N skips the approximate stage).
        filter : dict or mvr filter, optional
            Only documents whose metadata (or id) satisfies it (``mvr._filters``: eq, in,
            ranges, and/or/not, ids), applied before candidates are cut.
        hybrid : True, "rrf", "weighted", dict or HybridConfig, optional
            Fuse BM25 with late interaction (``serving._hybrid``); text queries only.
        """
        if filter is not None or (hybrid is not None and hybrid is not False):
            from serving._filtered_search import search_filtered

            return search_filtered(self, queries, k=k, candidates=candidates, rerank=rerank,
                                   rerank_candidates=rerank_candidates, filter=filter,
                                   hybrid=hybrid)
        _check_k(k, "k")
        n, n2 = self._depths(k, candidates, rerank_candidates)
        timings: dict[str, float] = {}
        t = time.perf_counter()
        q = self._query_vectors(queries)
        t = _tick(timings, "encode", t)
        qf = self._query_fdes(q)
        t = _tick(timings, "query_fde", t)
        handle = self._prefetch(qf, n2 if self._approx_active(n, n2) else n) if rerank else None
        t = _tick(timings, "coarse_prefetch", t) if handle is not None else t
        if rerank and handle is None and self._overlap_reads(n, n2):
            from serving._overlap import overlapped_candidates

            rows, handle = overlapped_candidates(self, q, qf, n, n2, timings)
            return self._finish(q, rows, k, timings, handle)
        fs_scores, fs_rows = self._first_stage(qf, n if rerank else k)
        t = _tick(timings, "first_stage", t)
        if rerank:
            fs_rows = self._approx(q, fs_rows, n2, timings=timings)
            _tick(timings, "approx", t)
            return self._finish(q, fs_rows, k, timings, handle)
        flat_offsets = np.arange(0, fs_rows.size + 1, fs_rows.shape[1], dtype=np.int64)
        ids, scores = self._top_k(fs_scores.reshape(-1), fs_rows.reshape(-1), flat_offsets, k)
        res = SearchResults(ids=ids, scores=scores, timings=timings)
        self._count(len(q), timings)
        return res

    def _finish(
        self, q: MultiVectors, rows: np.ndarray, k: int, timings: dict[str, float],
        handle: dict[int, Any] | None,
    ) -> SearchResults:
        res = self._rerank_rows(q, rows, k, timings, handle)
        self._count(len(q), timings)
        return res

    def _overlap_reads(self, n: int, n2: int) -> bool:
        """Whether the re-rank reads can start before the first stage runs: an SSD store,
        token or centroid lists and an approximate cut (see :func:`serving._overlap.overlapped_candidates`)."""
        cc = self._extra_n()
        return cc > 0 and n2 < n + cc and hasattr(self.store, "prefetch") and self.mode == "ssd"

    def _extra_n(self) -> int:
        """Candidates per query the token (or centroid) lists add to the first stage's:
        their configured depth, within ``config.candidate_tokens`` (:func:`search_depths`)."""
        return self._depths(1, None, None, lists_only=True)

    def _extra_candidates(self, q: MultiVectors, st: np.ndarray, mask: Any) -> np.ndarray:
        """Those candidates (shape (n_q, _extra_n()), -1 pads): the token lists' WARP
        estimate (:mod:`serving._token_candidates`), else the centroid lists'."""
        cfg = self.config
        if self._tokens is not None:
            return self._tokens.search(q.vectors, st, q.offsets, self._extra_n(),
                                       cfg.token_nprobe, cfg.token_kprime, mask)[0]
        from mvr._approx import centroid_candidates

        assert self._lists is not None
        return centroid_candidates(st, q.offsets, self._lists[0], self._lists[1], len(self.ids),
                                   self._extra_n(), cfg.centroid_nprobe, mask)

    def _depths(self, k: int, candidates: int | None, rerank_candidates: int | None,
                lists_only: bool = False) -> Any:
        """(first-stage N, approximate-stage N2) of a search, validated (:func:`search_depths`)."""
        cfg, counts = self.config, self.manifest["counts"]
        lists = (cfg.token_candidates if self._tokens is not None
                 else cfg.centroid_candidates if self._lists is not None else 0)
        n, c, n2 = search_depths(cfg, k, candidates, rerank_candidates, lists,
                                 int(counts["tokens"]) / max(int(counts["documents"]), 1))
        return c if lists_only else (n, n2)

    def _approx_active(self, n: int, n2: int) -> bool:
        return self._cids is not None and (n2 < n or self._extra_n() > 0)

    def _approx(
        self, q: MultiVectors, rows: np.ndarray, n2: int, *, allowed: Any = "index",
        timings: dict[str, float] | None = None,
    ) -> np.ndarray:
        """The best ``n2`` of each query's candidate ``rows`` (shape (n_q, N), -1 pads) by
        approximate MaxSim over centroid ids; ``rows`` itself without centroid ids.

        With token or centroid lists (:meth:`_extra_n` > 0) the lists' candidates are
        added to ``rows`` first; ``allowed`` (a bool mask over rows, None = all, default
        the index's tombstones) restricts them, and ``allowed=False`` adds none
        (``rows`` already holds every allowed row).
        """
        if self._cids is None or self.codec is None:
            return rows
        from mvr._approx import query_centroid_similarities, union_rows

        st = query_centroid_similarities(q.vectors, self.codec.centroids)
        if self._extra_n() and allowed is not False:
            t = time.perf_counter()
            mask = self._filter if isinstance(allowed, str) else allowed
            rows = union_rows(rows, self._extra_candidates(q, st, mask))
            if timings is not None:
                _tick(timings, "centroid_candidates", t)
        if n2 >= rows.shape[1]:
            return rows
        t = time.perf_counter()
        scores = self._approx_scores(q, st, rows)
        if timings is not None:
            _tick(timings, "approx_scores", t)
        _, best = top_n(scores, n2, rows)
        return best

    def _approx_scores(
        self, q: MultiVectors, st: np.ndarray, rows: np.ndarray, prepared: Any = None
    ) -> np.ndarray:
        """Approximate MaxSim of each query against its ``rows`` (shape (n_q, N), -1 pads):
        centroid ids refined by the approximate codes where the index has them
        (``prepared``: :meth:`_prepare_pq`, reused across calls for the same queries)."""
        from mvr._approx import centroid_scores, pq_scores

        assert self._tok_starts is not None and self._cids is not None
        if self._acodes is None:
            return centroid_scores(st, q.offsets, rows, self._tok_starts, self._cids)
        if prepared is None:
            prepared = self._prepare_pq(q, st)
        order = np.argsort(rows, axis=1)  # ascending rows: neighbouring codes share pages
        out = np.empty(rows.shape, np.float32)
        np.put_along_axis(out, order, pq_scores(st, None, q.offsets, np.take_along_axis(
            rows, order, axis=1), self._tok_starts, self._cids, self._acodes, prepared), axis=1)
        return out

    def _prepare_pq(self, q: MultiVectors, st: np.ndarray) -> Any:
        """The queries' tables for :func:`mvr._approx.pq_scores` (None without codes)."""
        if self._acodes is None:
            return None
        from mvr._approx import prepare_pq

        return prepare_pq(st, lambda lo, hi: self.codec.approx_tables(q.vectors[lo:hi]), q.offsets)

    def search_stream(
        self, batches: Any, *, k: int = 10, candidates: int | None = None
    ) -> Iterator[SearchResults]:
        """:meth:`search` over an iterable of query batches, pipelined: the first stage
        (and prefetch) of the next batch overlaps the re-ranking of the current one.
        Yields one SearchResults per batch, in order, equal to ``search(batch)``'s."""
        return search_stream(self, batches, k=k, candidates=candidates)

    def rerank(self, queries: Any, doc_ids: list[list[str]], *, k: int | None = None) -> SearchResults:
        """Exact MaxSim of each query against the given documents (all of them when ``k``
        is None). Unknown or deleted ids raise :class:`DocumentNotFoundError`."""
        q = self._query_vectors(queries)
        if len(doc_ids) != len(q):
            raise ConfigError(f"doc_ids: expected one list per query ({len(q)}), got {len(doc_ids)}")
        missing = sorted({d for ds in doc_ids for d in ds if d not in self._id_to_row})
        if missing:
            raise DocumentNotFoundError(
                f"{len(missing)} document id(s) not in the index (or deleted): {missing[:20]}"
            )
        width = max((len(ds) for ds in doc_ids), default=0)
        rows = np.full((len(q), max(width, 1)), -1, dtype=np.int64)
        for i, ds in enumerate(doc_ids):
            rows[i, : len(ds)] = [self._id_to_row[d] for d in ds]
        res = self._rerank_rows(q, rows, width if k is None else k, {})
        return res

    def exhaustive(self, queries: Any, *, k: int = 10) -> SearchResults:
        """Exact MaxSim over every live document (the reference the first stage is measured
        against), in blocks of rows."""
        from mvr._maxsim import maxsim

        _check_k(k, "k")
        q = self._query_vectors(queries)
        t = time.perf_counter()
        best_s = np.full((len(q), 0), -np.inf, dtype=np.float32)
        best_r = np.zeros((len(q), 0), dtype=np.int64)
        for lo in range(0, len(self._live_rows), _EXHAUSTIVE_BLOCK):
            rows = self._live_rows[lo : lo + _EXHAUSTIVE_BLOCK]
            s = np.asarray(maxsim(q, self._fetch(rows)), dtype=np.float32)
            best_s, best_r = top_n(
                np.concatenate([best_s, s], axis=1), k,
                np.concatenate([best_r, np.broadcast_to(rows, s.shape)], axis=1),
            )
        ids = [[self.ids[j] for j in r[r >= 0].tolist()] for r in best_r]
        scores = [s[r >= 0] for s, r in zip(best_s, best_r, strict=True)]
        timings = {"exhaustive": time.perf_counter() - t}
        return SearchResults(ids=ids, scores=scores, timings=timings)

    def get_texts(self, ids: Sequence[str]) -> list[str | None]:
        """Stored texts of ``ids`` (None where no text was stored). Unknown ids raise
        :class:`DocumentNotFoundError`."""
        missing = [d for d in ids if d not in self._id_to_row]
        if missing:
            raise DocumentNotFoundError(
                f"{len(missing)} document id(s) not in the index (or deleted): {missing[:20]}"
            )
        out: list[str | None] = []
        for d in ids:
            row = self._id_to_row[d]
            seg = int(np.searchsorted(self._seg_starts, row, side="right") - 1)
            reader = self._texts[seg]
            out.append(None if reader is None else reader.get(row - int(self._seg_starts[seg])))
        return out

    def _count(self, n_queries: int, timings: dict[str, float]) -> None:
        with self._lock:
            self._stats["queries"] = self._stats.get("queries", 0) + n_queries
            self._stats["calls"] = self._stats.get("calls", 0) + 1
            for key, v in timings.items():
                self._stats[f"seconds.{key}"] = self._stats.get(f"seconds.{key}", 0.0) + v
        for key, v in timings.items():
            self._stages.record(key, v)
        release_freed_memory(n_queries)

    def stats(self) -> dict[str, Any]:
        """Counts, configuration and cumulative per-stage seconds."""
        with self._lock:
            counters = dict(self._stats)
        store_stats = self.store.stats() if hasattr(self.store, "stats") else {}
        return {
            "path": str(self.path),
            "generation": self.manifest["generation"],
            "documents": self.num_documents,
            "deleted": int(len(self.ids) - self.num_documents),
            "segments": len(self.manifest["segments"]),
            "tokens": int(self.manifest["counts"]["tokens"]),
            "dim": self.dim,
            "fde_dim": int(self.manifest["fde_dim"]),
            "first_stage": self.first_stage.kinds,
            "mode": self.mode,
            "store": store_stats,
            "counters": counters,
            "stages": self._stages.percentiles(),
        }

    def close(self) -> None:
        """Release the store and the open files (idempotent)."""
        if getattr(self, "store", None) is not None:
            self.store.close()
        if getattr(self, "_held", None) is not None:
            self._held.close()
        for r in self._texts:
            if r is not None:
                r.close()
        self._texts = []

    def __enter__(self) -> Searcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Searcher({str(self.path)!r}, documents={self.num_documents}, "
                f"mode={self.mode!r}, first_stage={self.first_stage.kinds})")
