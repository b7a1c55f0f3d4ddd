"""The blocking work of a batch, run in a worker thread: encode, search, re-rank.

Jobs of one batch that can share a call are grouped (search: same ``k``,
``candidates`` and ``rerank``; re-rank by ids; re-rank by texts) and each group
runs as one call of the searcher or of the encoder + :func:`mvr.maxsim_candidates`.

When a shared call fails, what happens depends on whose fault it is:

- an error of one job's input (an mvr error that refines ``ValueError``, ``KeyError``
  or ``TypeError``: an unknown id, a vector of the wrong dim, a text the encoder does
  not know): the group's jobs run again one by one, so the error reaches only the
  request that caused it;
- anything else (I/O and corrupt-index errors, which are ``OSError``; a bug): every job
  of the group gets the error, and nothing is re-run: re-running would repeat the
  failing reads once per job.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

import mvr
from mvr import MultiVectors, SearchResults
from mvr.errors import DocumentNotFoundError, MVRError
from serving.http._batcher import Job

__all__ = ["SearchPayload", "RerankPayload", "SearchOutput", "RerankOutput", "Engine"]


@dataclass(frozen=True)
class SearchPayload:
    """Queries as texts or as vectors (exactly one set), and whether to return texts."""

    texts: list[str] | None
    vectors: MultiVectors | None
    return_texts: bool


@dataclass(frozen=True)
class RerankPayload:
    """One query (text or (1 item) vectors) and its documents (ids or texts)."""

    query: str | None
    vectors: MultiVectors | None
    ids: list[str] | None
    texts: list[str] | None
    k: int | None
    return_texts: bool


@dataclass
class SearchOutput:
    ids: list[list[str]]
    scores: list[np.ndarray]
    texts: list[list[str | None]] | None
    timings: dict[str, float]
    batch_size: int = 0
    partial: bool = False  # a sharded searcher answered without some shards
    missing_shards: list[int] = field(default_factory=list)


@dataclass
class RerankOutput:
    order: np.ndarray | None  # by-text requests: positions of the documents, best first
    scores: np.ndarray  # float32, aligned with order
    ids: list[str] | None  # ids of the ranked documents (by-id requests)
    texts: list[str | None] | None
    timings: dict[str, float]
    batch_size: int = 0


def _is_input_error(exc: BaseException) -> bool:
    """Whether ``exc`` is attributable to one job's input (see the module docstring)."""
    return isinstance(exc, MVRError) and isinstance(exc, ValueError | KeyError | TypeError)


class Engine:
    """Runs batches of :class:`Job` against one searcher (thread-safe per the contract).

    Parameters
    ----------
    searcher : serving.Searcher
        An open searcher: ``search``, ``rerank``, ``get_texts``, ``encoder``, ``dim``.
    """

    def __init__(self, searcher: Any) -> None:
        self.searcher = searcher

    # ------------------------------------------------------------------ entry point
    def run(self, jobs: Sequence[Job]) -> list[Any]:
        """Per job, its output or the exception it raised."""
        out: list[Any] = [None] * len(jobs)
        groups: dict[Any, list[int]] = {}
        for i, job in enumerate(jobs):
            groups.setdefault((job.kind, job.key), []).append(i)
        for (kind, _), idx in groups.items():
            members = [jobs[i] for i in idx]
            try:
                results = self._run_group(kind, members)
            except Exception as exc:
                if _is_input_error(exc):  # isolate the request(s) whose input caused it
                    results = [self._run_alone(kind, j) for j in members]
                else:  # a fault of the index or the machine: all of them, no re-run
                    results = [exc] * len(members)
            for i, r in zip(idx, results, strict=True):
                out[i] = r
        return out

    def _run_alone(self, kind: str, job: Job) -> Any:
        try:
            return self._run_group(kind, [job])[0]
        except DocumentNotFoundError as exc:
            if kind == "rerank_ids":
                return self._missing(job.payload.ids or [], exc)
            return exc
        except Exception as exc:
            return exc

    def _missing(self, ids: list[str], exc: DocumentNotFoundError) -> DocumentNotFoundError:
        """The error listing every unknown id of a request (the searcher's may be truncated)."""
        missing = []
        for d in ids:
            try:
                self.searcher.get_texts([d])
            except DocumentNotFoundError:
                missing.append(d)
        if not missing:
            return exc
        err = DocumentNotFoundError(
            f"{len(missing)} document id(s) not in the index (or deleted): {missing}"
        )
        err.ids = missing  # type: ignore[attr-defined]
        return err

    def _run_group(self, kind: str, jobs: list[Job]) -> list[Any]:
        if kind == "search":
            return self._search(jobs)
        if kind == "rerank_ids":
            return self._rerank_ids(jobs)
        if kind == "rerank_texts":
            return self._rerank_texts(jobs)
        raise ValueError(f"job kind: expected search, rerank_ids or rerank_texts, got {kind!r}")

    # ------------------------------------------------------------------ helpers
    def _queries(
        self, parts: list[tuple[list[str] | None, MultiVectors | None]], timings: dict[str, float]
    ) -> list[str] | MultiVectors:
        """Texts and vectors of several jobs -> one query batch, in job order.

        All texts: returned as a list (the searcher encodes them); else the texts
        are encoded here in one call and concatenated with the vectors.
        """
        if all(v is None for _, v in parts):
            return [t for texts, _ in parts for t in (texts or [])]
        texts = [t for ts, v in parts if v is None for t in (ts or [])]
        encoded = None
        if texts:
            t0 = time.perf_counter()
            encoded = self.searcher.encoder.encode_queries(texts)
            timings["encode"] = timings.get("encode", 0.0) + time.perf_counter() - t0
        batches, pos = [], 0
        for ts, v in parts:
            if v is not None:
                batches.append(v.astype(np.float32))
            elif encoded is not None and ts is not None:
                batches.append(encoded[pos : pos + len(ts)].astype(np.float32))
                pos += len(ts)
        return MultiVectors.concat(batches)

    def _texts(self, ids: list[str]) -> list[str | None]:
        return list(self.searcher.get_texts(ids)) if ids else []

    # ------------------------------------------------------------------ search
    def _search(self, jobs: list[Job]) -> list[SearchOutput]:
        k, candidates, rerank, flt_json, hyb_json, partial = cast(tuple[Any, ...], jobs[0].key)
        flt, hyb = (json.loads(o) if o is not None else None for o in (flt_json, hyb_json))
        payloads: list[SearchPayload] = [j.payload for j in jobs]
        timings: dict[str, float] = {}
        queries = self._queries([(p.texts, p.vectors) for p in payloads], timings)
        extra: dict[str, Any] = {} if flt is None and hyb is None else {"filter": flt,
                                                                         "hybrid": hyb}
        if partial and getattr(self.searcher, "supports_partial", False):
            extra["partial_results"] = True  # one process has no shards: always complete
        res: SearchResults = self.searcher.search(
            queries, k=k, candidates=candidates, rerank=rerank, **extra
        )
        timings.update({name: float(v) for name, v in res.timings.items()})
        outs, pos = [], 0
        n = len(res)
        for p in payloads:
            m = len(p.texts) if p.texts is not None else len(p.vectors or [])
            ids = [list(x) for x in res.ids[pos:pos + m]]
            scores = [np.asarray(s, dtype=np.float32) for s in res.scores[pos:pos + m]]
            pos += m
            texts = None
            if p.return_texts:
                flat = self._texts([d for q in ids for d in q])
                texts, at = [], 0
                for q in ids:
                    texts.append(flat[at:at + len(q)])
                    at += len(q)
            outs.append(SearchOutput(ids, scores, texts, dict(timings), n,
                                     bool(getattr(res, "partial", False)),
                                     list(getattr(res, "missing_shards", []))))
        return outs

    # ------------------------------------------------------------------ rerank
    def _rerank_ids(self, jobs: list[Job]) -> list[RerankOutput]:
        payloads: list[RerankPayload] = [j.payload for j in jobs]
        timings: dict[str, float] = {}
        queries = self._queries(
            [([p.query] if p.query is not None else None, p.vectors) for p in payloads], timings
        )
        doc_ids = [list(p.ids or []) for p in payloads]
        res: SearchResults = self.searcher.rerank(queries, doc_ids, k=None)
        timings.update({name: float(v) for name, v in res.timings.items()})
        outs = []
        for q, p in enumerate(payloads):
            ids = list(res.ids[q])
            scores = np.asarray(res.scores[q], dtype=np.float32)
            if p.k is not None:
                ids, scores = ids[: p.k], scores[: p.k]
            texts = self._texts(ids) if p.return_texts else None
            outs.append(RerankOutput(None, scores, ids, texts, dict(timings), len(jobs)))
        return outs

    def _pool_like_index(self, docs: MultiVectors) -> MultiVectors:
        """Pool as the index's manifest pooling config does (``indexing.pool_tokens``), so
        that scores of given texts are on the scale of the indexed documents'."""
        pooling = self.searcher.config.pooling
        if pooling.pool_factor == 1:
            return docs
        from indexing import pool_tokens

        return cast(MultiVectors, pool_tokens(docs, pooling))

    def _rerank_texts(self, jobs: list[Job]) -> list[RerankOutput]:
        payloads: list[RerankPayload] = [j.payload for j in jobs]
        timings: dict[str, float] = {}
        queries = self._queries(
            [([p.query] if p.query is not None else None, p.vectors) for p in payloads], timings
        )
        if isinstance(queries, list):
            t0 = time.perf_counter()
            queries = self.searcher.encoder.encode_queries(queries)
            timings["encode"] = time.perf_counter() - t0
        docs = [t for p in payloads for t in (p.texts or [])]
        t0 = time.perf_counter()
        doc_vectors = self._pool_like_index(self.searcher.encoder.encode_documents(docs))
        timings["encode_documents"] = time.perf_counter() - t0
        counts = np.array([len(p.texts or []) for p in payloads], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        t0 = time.perf_counter()
        flat = np.asarray(mvr.maxsim_candidates(queries, doc_vectors, offsets), dtype=np.float32)
        timings["maxsim"] = time.perf_counter() - t0
        outs = []
        for q, p in enumerate(payloads):
            scores = flat[offsets[q]:offsets[q + 1]]
            order = np.argsort(-scores, kind="stable")
            if p.k is not None:
                order = order[: p.k]
            outs.append(RerankOutput(order, scores[order], None, None, dict(timings), len(jobs)))
        return outs
