"""The prefetcher: a cheap coarse first-stage pass starts the candidates' reads early.

ESPN (Shrestha et al.) hides SSD latency by requesting the candidates' token
vectors from the *early, partial* results of candidate generation. Here:

1. a coarse pass predicts the first stage's top rows cheaply:
   :class:`IVFCoarsePass` (a small 8-bit IVF over the FDEs searched with a low
   nprobe: the default), :class:`ProjectedCoarsePass` (a scan of the FDEs
   projected on their principal directions) or :class:`PrefixCoarsePass` (a
   scan of the first FDE columns = the first MUVERA repetitions);
2. :class:`Prefetcher` hands the coarse top-``coarse_candidates`` rows to the
   disk store at once (reads go in flight on its thread pool);
3. the full first stage runs meanwhile; the re-ranker then takes what has
   arrived (``store.get(rows, prefetched=handle)``) and reads the misses.

:func:`pipelined` overlaps consecutive batches of a stream: the first stage
(and the prefetch) of batch ``i + 1`` runs on a worker thread while batch ``i``
is re-ranked. :class:`StageTimer` keeps per-stage latency percentiles.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

import numpy as np

from mvr.errors import ConfigError, DimensionMismatchError
from serving._stages import check_k as _check_k
from serving._stages import tick as _tick

__all__ = [
    "CoarsePass",
    "PrefixCoarsePass",
    "ProjectedCoarsePass",
    "IVFCoarsePass",
    "Prefetcher",
    "SegmentedCoarsePass",
    "make_prefetcher",
    "attach_to_searcher",
    "search_stream",
    "StageTimer",
    "pipelined",
    "top_rows",
]

T = TypeVar("T")
U = TypeVar("U")
V = TypeVar("V")


class CoarsePass(Protocol):
    """Anything with a FirstStage-like ``search`` returning (scores, rows)."""

    def search(
        self, queries: np.ndarray, n: int, *, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]: ...


class StageTimer:
    """Per-stage latencies (the last ``window`` samples of each) and their percentiles."""

    def __init__(self, window: int = 10_000) -> None:
        self._window = window
        self._lock = threading.Lock()
        self._samples: dict[str, deque[float]] = {}

    def record(self, stage: str, seconds: float) -> None:
        with self._lock:
            q = self._samples.get(stage)
            if q is None:
                q = self._samples[stage] = deque(maxlen=self._window)
            q.append(seconds)

    @contextmanager
    def time(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.record(stage, time.perf_counter() - t0)

    def percentiles(self) -> dict[str, dict[str, float]]:
        """``{stage: {count, mean_ms, p50_ms, p95_ms, p99_ms}}``."""
        with self._lock:
            snap = {k: np.fromiter(v, dtype=np.float64) for k, v in self._samples.items()}
        out = {}
        for stage, s in snap.items():
            if s.size == 0:
                continue
            p50, p95, p99 = np.percentile(s, [50, 95, 99]) * 1e3
            out[stage] = {
                "count": int(s.size), "mean_ms": float(s.mean() * 1e3),
                "p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99),
            }
        return out

    def reset(self) -> None:
        with self._lock:
            self._samples.clear()


def top_rows(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``n`` columns of each row of ``scores``, best first (ties: lower column first).

    Parameters
    ----------
    scores : np.ndarray
        Shape: (n_queries, n_docs), float32; ``-inf`` marks excluded documents.

    Returns
    -------
    top_scores, rows : np.ndarray
        Shape: (n_queries, min(n, n_docs)); rows are int64, ``-1`` where only
        excluded documents were left.
    """
    nq, nd = scores.shape
    n = min(n, nd)
    if n <= 0:
        return np.zeros((nq, 0), np.float32), np.zeros((nq, 0), np.int64)
    part = np.argpartition(-scores, n - 1, axis=1)[:, :n] if n < nd else np.tile(np.arange(nd), (nq, 1))
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    rows = np.take_along_axis(part, order, axis=1).astype(np.int64)
    top = np.take_along_axis(part_scores, order, axis=1).astype(np.float32)
    rows[~np.isfinite(top)] = -1
    return top, rows


class PrefixCoarsePass:
    """Coarse pass for the exact first stage: inner products over the first ``dims`` FDE columns.

    A MUVERA FDE is the concatenation of its repetitions, so a column prefix is
    the FDE of the first repetitions: the same estimator with fewer samples,
    ``dims / fde_dim`` of the cost.

    Parameters
    ----------
    fdes : np.ndarray
        Shape: (n_docs, fde_dim), float32 document FDEs (not copied; the
        prefix is a strided view, so no extra memory).
    dims : int
        Leading columns scored, ``1 <= dims <= fde_dim``.
    block_rows : int
        Documents scored per GEMM block (bounds the temporary score matrix).
    """

    def __init__(self, fdes: np.ndarray, dims: int, *, block_rows: int = 131_072) -> None:
        if fdes.ndim != 2:
            raise DimensionMismatchError(f"fdes: expected a 2-D (n_docs, fde_dim) array, got {fdes.shape}")
        if not 1 <= dims <= fdes.shape[1]:
            raise ConfigError(f"coarse dims: expected 1..{fdes.shape[1]}, got {dims}")
        self._prefix = fdes[:, :dims]
        self.dims = int(dims)
        self.block_rows = int(block_rows)

    @property
    def ntotal(self) -> int:
        return int(self._prefix.shape[0])

    def search(
        self, queries: np.ndarray, n: int, *, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` rows by prefix inner product. Shapes as :meth:`mvr.FirstStage.search`."""
        q = np.ascontiguousarray(queries[:, : self.dims], dtype=np.float32)
        best_s = np.full((q.shape[0], 0), -np.inf, np.float32)
        best_r = np.zeros((q.shape[0], 0), np.int64)
        for lo in range(0, self.ntotal, self.block_rows):
            hi = min(lo + self.block_rows, self.ntotal)
            s = q @ self._prefix[lo:hi].T
            if allowed is not None:
                s[:, ~allowed[lo:hi]] = -np.inf
            top_s, top_r = top_rows(s, n)
            top_r = np.where(top_r >= 0, top_r + lo, -1)
            best_s, best_r = _merge_top(best_s, best_r, top_s, top_r, n)
        return best_s, best_r


class ProjectedCoarsePass:
    """Coarse pass over the FDEs projected on their top principal directions.

    ``V`` (fde_dim, dims) holds the leading eigenvectors of the (uncentred)
    second-moment matrix of a sample of document FDEs, so ``(q V) . (d V)`` is
    the best rank-``dims`` estimate of ``q . d`` on average over documents; it
    predicts the full first stage's top rows far better than a column prefix
    of the same width. Costs ``n_docs * dims`` float32 of extra RAM.

    Parameters
    ----------
    fdes : np.ndarray
        Shape: (n_docs, fde_dim), float32 document FDEs (read in blocks).
    dims : int
        Projected width, ``1 <= dims <= fde_dim``.
    sample : int
        Documents used to estimate the directions.
    seed : int
        Seed of the sample.
    """

    def __init__(
        self, fdes: np.ndarray, dims: int, *, sample: int = 20_000, seed: int = 0,
        block_rows: int = 131_072,
    ) -> None:
        if fdes.ndim != 2:
            raise DimensionMismatchError(f"fdes: expected a 2-D (n_docs, fde_dim) array, got {fdes.shape}")
        if not 1 <= dims <= fdes.shape[1]:
            raise ConfigError(f"coarse dims: expected 1..{fdes.shape[1]}, got {dims}")
        n = fdes.shape[0]
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(n, min(sample, n), replace=False))
        self.basis = _top_directions(np.asarray(fdes[idx], dtype=np.float32), dims, rng)
        proj = np.empty((n, dims), np.float32)
        for lo in range(0, n, block_rows):
            proj[lo : lo + block_rows] = np.asarray(fdes[lo : lo + block_rows], np.float32) @ self.basis
        self.dims = int(dims)
        self._scan = PrefixCoarsePass(proj, dims, block_rows=block_rows)

    @property
    def ntotal(self) -> int:
        return self._scan.ntotal

    @property
    def nbytes(self) -> int:
        return int(self._scan._prefix.nbytes + self.basis.nbytes)

    def search(
        self, queries: np.ndarray, n: int, *, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` rows by projected inner product. Shapes as :meth:`mvr.FirstStage.search`."""
        q = np.asarray(queries, np.float32) @ self.basis
        return self._scan.search(q, n, allowed=allowed)


class IVFCoarsePass:
    """Coarse pass through a small faiss IVF index over the FDEs (8-bit scalar quantised).

    The "low nprobe" pass: the query scores the ``nlist`` centroids and then only the
    documents of its ``nprobe`` nearest lists, so it costs a small fraction of the
    exact scan (and of the top-N selection over every document, which dominates a
    full-width scan of a projection). Extra RAM: one byte per FDE dimension per
    document plus the centroids. Tombstones are not filtered here: a deleted row
    it predicts costs one wasted read, never a wrong result.

    Parameters
    ----------
    fdes : np.ndarray
        Shape: (n_docs, fde_dim), float32 document FDEs (added in blocks).
    nlist : int, optional
        Lists; default ``sqrt(n_docs)`` (at most 4096, at most training size / 8).
    nprobe : int, optional
        Lists scanned per query; default ``nlist // 8``.
    train_size : int
        At most this many documents (40 per list) train the centroids and the quantiser.
        Building costs about ``n_docs * nlist * fde_dim`` flops: with 10,240-d FDEs prefer
        ``final_projection_dim`` or the ``"pca"`` coarse pass on large corpora.
    """

    def __init__(
        self, fdes: np.ndarray, *, nlist: int | None = None, nprobe: int | None = None,
        train_size: int = 40_000, seed: int = 0, block_rows: int = 131_072,
    ) -> None:
        import faiss

        if fdes.ndim != 2 or fdes.shape[0] == 0:
            raise DimensionMismatchError(f"fdes: expected a non-empty (n_docs, fde_dim) array, got {fdes.shape}")
        n, d = fdes.shape
        rng = np.random.default_rng(seed)
        nlist = nlist or int(min(4096, max(1.0, np.sqrt(n))))
        n_train = min(train_size, max(40 * nlist, 1000), n)  # faiss wants >= 39 per list
        sample = np.ascontiguousarray(fdes[np.sort(rng.choice(n, n_train, replace=False))], np.float32)
        self.nlist = max(1, min(nlist, len(sample) // 8))
        self.nprobe = max(1, min(nprobe or self.nlist // 8, self.nlist))
        self._quantizer = faiss.IndexFlatIP(d)
        self.index = faiss.IndexIVFScalarQuantizer(
            self._quantizer, d, self.nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
        self.index.train(sample)
        for lo in range(0, n, block_rows):
            self.index.add(np.ascontiguousarray(fdes[lo : lo + block_rows], np.float32))
        self.index.nprobe = self.nprobe
        self.dims = int(d)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def nbytes(self) -> int:
        return self.ntotal * (self.dims + 8) + self.nlist * self.dims * 4

    def search(
        self, queries: np.ndarray, n: int, *, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` rows among the ``nprobe`` nearest lists (-1 pads); ``allowed`` is ignored."""
        s, r = self.index.search(np.ascontiguousarray(queries, np.float32), min(n, self.ntotal))
        return s.astype(np.float32), r.astype(np.int64)


def _top_directions(s: np.ndarray, dims: int, rng: np.random.Generator) -> np.ndarray:
    """Leading right singular vectors of ``s`` (sample, fde_dim) -> (fde_dim, dims) float32.

    Exact (eigh of the Gram matrix) for narrow FDEs; a randomized range finder
    with two power iterations (Halko et al.) for wide ones.
    """
    width = s.shape[1]
    if width <= 1024:
        g = s.astype(np.float64)
        _, vecs = np.linalg.eigh(g.T @ g)
        return np.ascontiguousarray(vecs[:, ::-1][:, :dims], dtype=np.float32)
    k = min(dims + 16, width, s.shape[0])
    y = s @ rng.standard_normal((width, k)).astype(np.float32)
    for _ in range(2):
        y, _ = np.linalg.qr(y)
        y = s @ (s.T @ y)
    q, _ = np.linalg.qr(y)
    _, _, vt = np.linalg.svd((q.T @ s).astype(np.float64), full_matrices=False)
    basis = np.zeros((width, dims), np.float32)
    basis[:, : min(dims, vt.shape[0])] = vt[:dims].T
    return basis


def _merge_top(
    s1: np.ndarray, r1: np.ndarray, s2: np.ndarray, r2: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    s = np.concatenate([s1, s2], axis=1)
    r = np.concatenate([r1, r2], axis=1)
    key = np.where(r >= 0, r, np.iinfo(np.int64).max)
    order = np.lexsort((key, -s), axis=1)[:, :n]
    return np.take_along_axis(s, order, axis=1), np.take_along_axis(r, order, axis=1)


class SegmentedCoarsePass:
    """Coarse passes over consecutive blocks of rows (``base + local row``), merged by score.

    Row blocks without a coarse pass (e.g. faiss segments) are simply not prefetched:
    their candidates are read when the re-ranker needs them.
    """

    def __init__(self, parts: list[tuple[int, Any]]) -> None:
        self.parts = parts

    @property
    def dims(self) -> int:
        return int(self.parts[0][1].dims) if self.parts else 0

    @property
    def nbytes(self) -> int:
        return sum(int(getattr(c, "nbytes", 0)) for _, c in self.parts)

    def search(
        self, queries: np.ndarray, n: int, *, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        best_s = np.full((queries.shape[0], 0), -np.inf, np.float32)
        best_r = np.zeros((queries.shape[0], 0), np.int64)
        for base, coarse in self.parts:
            sub = None if allowed is None else allowed[base : base + coarse.ntotal]
            s, r = coarse.search(queries, n, allowed=sub)
            best_s, best_r = _merge_top(best_s, best_r, s, np.where(r >= 0, r + base, -1), n)
        return best_s, best_r


class FaissCoarsePass:
    """The coarse pass of a faiss IVF first stage: the same index probed fewer lists
    (``nprobe``, default a quarter of the first stage's)."""

    def __init__(self, stage: Any, nprobe: int | None = None) -> None:
        self.stage = stage
        self.nprobe = max(1, int(nprobe) if nprobe else stage.nprobe // 4)
        self.dims = stage.dim

    @property
    def ntotal(self) -> int:
        return int(self.stage.ntotal)

    @property
    def nbytes(self) -> int:
        return 0  # shares the first stage's codes

    def search(
        self, queries: np.ndarray, n: int, *, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        return self.stage.search(queries, n, allowed=allowed, nprobe=self.nprobe)


class Prefetcher:
    """Runs the coarse pass and starts the reads of its top rows.

    Parameters
    ----------
    store : DiskTokenStore
        Anything with ``prefetch(rows) -> mapping`` (the disk store).
    coarse : CoarsePass
        The cheap first-stage pass.
    coarse_candidates : int, optional
        Rows per query whose reads are started; None: ``coarse_factor`` x the N
        given to :meth:`start`.
    coarse_factor : float
        See ``coarse_candidates``.
    timer : StageTimer, optional
        Records the ``coarse`` and ``prefetch_submit`` stages.
    """

    def __init__(
        self, store: Any, coarse: CoarsePass, coarse_candidates: int | None = None,
        *, coarse_factor: float = 1.2, timer: StageTimer | None = None,
    ) -> None:
        if coarse_candidates is not None and coarse_candidates < 1:
            raise ConfigError(f"coarse_candidates: expected >= 1, got {coarse_candidates}")
        if not coarse_factor > 0:
            raise ConfigError(f"coarse_factor: expected > 0, got {coarse_factor}")
        self.store = store
        self.coarse = coarse
        self.coarse_candidates = coarse_candidates
        self.coarse_factor = float(coarse_factor)
        self.timer = timer or StageTimer()

    def start(
        self, query_fdes: np.ndarray, n: int | None = None, *, allowed: np.ndarray | None = None
    ) -> dict[int, Any]:
        """Coarse top rows of every query, their reads started; returns the handle.

        Parameters
        ----------
        query_fdes : np.ndarray
            Shape: (n_queries, fde_dim), float32.
        n : int, optional
            The first stage's N (sets the prefetch depth when ``coarse_candidates`` is None).
        """
        depth = self.coarse_candidates or max(1, int(np.ceil(self.coarse_factor * (n or 1))))
        with self.timer.time("coarse"):
            _, rows = self.coarse.search(query_fdes, depth, allowed=allowed)
        with self.timer.time("prefetch_submit"):
            return self.store.prefetch(rows[rows >= 0])

    def config(self) -> dict[str, Any]:
        return {
            "coarse": type(self.coarse).__name__, "coarse_dims": getattr(self.coarse, "dims", None),
            "coarse_ram_bytes": int(getattr(self.coarse, "nbytes", 0)),
            "coarse_candidates": self.coarse_candidates, "coarse_factor": self.coarse_factor,
            "stages": self.timer.percentiles(),
        }


def make_prefetcher(store: Any, first_stage: Any) -> Prefetcher | None:
    """The prefetcher for a searcher's store, or None (not an SSD store, or prefetch off).

    Builds one coarse pass per exact first-stage part (``first_stage.parts`` of
    ``(base row, stage)``; a stage with an ``fdes`` matrix), following
    ``store.prefetch_options``; attaches the prefetcher to the store so that
    ``store.stats()`` reports it.
    """
    opts = getattr(store, "prefetch_options", None)
    if not opts or not opts["prefetch"]:
        return None
    parts = []
    for base, stage in getattr(first_stage, "parts", [(0, first_stage)]):
        if getattr(stage, "kind", None) == "faiss" and getattr(stage, "_ivf", None) is not None:
            parts.append((int(base), FaissCoarsePass(stage, opts["coarse_nprobe"])))
            continue
        fdes = getattr(stage, "fdes", None)
        if fdes is None and getattr(stage, "kind", None) == "flat" and stage.ntotal:
            fdes = stage.index.reconstruct_n(0, stage.ntotal)  # a small segment's FDEs
        if fdes is None or fdes.shape[0] == 0:
            continue
        parts.append((int(base), _coarse_for(fdes, opts)))
    if not parts:
        return None
    pf = Prefetcher(
        store, SegmentedCoarsePass(parts), opts["coarse_candidates"],
        coarse_factor=opts["coarse_factor"],
    )
    store.prefetcher = pf
    return pf


def _coarse_for(fdes: np.ndarray, opts: dict[str, Any]) -> Any:
    if opts["coarse"] == "ivf":
        return IVFCoarsePass(fdes, nlist=opts["coarse_nlist"], nprobe=opts["coarse_nprobe"])
    dims = min(opts["coarse_dims"], fdes.shape[1])
    if opts["coarse"] == "pca":
        return ProjectedCoarsePass(fdes, dims)
    return PrefixCoarsePass(fdes, dims)


def attach_to_searcher(searcher: Any) -> Prefetcher | None:
    """SSD mode wiring for ``serving.Searcher.open``: document ids for the store's error
    messages, and the prefetcher over the searcher's first stage (None in other modes)."""
    store = searcher.store
    if hasattr(store, "prefetch_options") and getattr(store, "_ids", None) is None:
        store._ids = searcher.ids
    return make_prefetcher(store, searcher.first_stage)


def search_stream(
    searcher: Any, batches: Iterable[Any], *, k: int = 10, candidates: int | None = None,
    depth: int = 1,
) -> Iterator[Any]:
    """Search each batch of queries of a stream, pipelined (results in input order).

    The front stage of batch ``i + 1`` (query encoding, query FDEs, coarse pass and
    prefetch, full first stage) runs on a worker thread while batch ``i`` is
    re-ranked (reads of the misses, MaxSim, top-k). Each batch gets exactly the
    results ``searcher.search(batch, k=k, candidates=candidates)`` would give.
    """
    _check_k(k, "k")
    n, n2 = searcher._depths(k, candidates, None)

    def front(queries: Any) -> tuple[Any, np.ndarray, Any, dict[str, float]]:
        timings: dict[str, float] = {}
        t = time.perf_counter()
        q = searcher._query_vectors(queries)
        t = _tick(timings, "encode", t)
        qf = searcher._query_fdes(q)
        t = _tick(timings, "query_fde", t)
        handle = searcher._prefetch(qf, n)
        t = _tick(timings, "coarse_prefetch", t) if handle is not None else t
        _, rows = searcher._first_stage(qf, n)
        t = _tick(timings, "first_stage", t)
        rows = searcher._approx(q, rows, n2)
        _tick(timings, "approx", t)
        return q, rows, handle, timings

    def back(state: tuple[Any, np.ndarray, Any, dict[str, float]]) -> Any:
        q, rows, handle, timings = state
        res = searcher._rerank_rows(q, rows, k, timings, handle)
        searcher._count(len(q), timings)
        return res

    return pipelined(batches, front, back, depth=depth)


def pipelined(
    items: Iterable[T],
    front: Callable[[T], U],
    back: Callable[[U], V],
    *,
    depth: int = 1,
) -> Iterator[V]:
    """Yield ``back(front(item))`` for each item, overlapping ``front`` of the next ones.

    ``front`` (encode, coarse pass + prefetch, full first stage) of the next
    ``depth`` items runs on a worker thread while ``back`` (gather + re-rank)
    of the current item runs in the caller's thread. Results keep the input
    order; an exception in either stage propagates at that item.
    """
    if depth < 1:
        raise ConfigError(f"pipeline depth: expected >= 1, got {depth}")
    it = iter(items)
    with ThreadPoolExecutor(1, thread_name_prefix="mvr-front") as ex:
        queue: deque[Any] = deque()
        for item in it:
            queue.append(ex.submit(front, item))
            if len(queue) > depth:
                break
        while queue:
            ready = queue.popleft().result()
            nxt = next(it, _END)
            if nxt is not _END:
                queue.append(ex.submit(front, nxt))
            yield back(ready)


_END = object()
