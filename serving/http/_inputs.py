"""Validate requests against the server limits and turn JSON vectors into arrays.

Everything here runs before a request is queued, so a bad request never
reaches (or fails) a batch shared with others.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mvr import MultiVectors
from mvr.errors import DimensionMismatchError, InvalidVectorsError
from serving.http._errors import LimitExceededError
from serving.http._models import RerankRequest, SearchRequest, TextDocument
from serving.http._settings import ServerSettings

__all__ = ["check_search", "check_rerank", "vectors_to_multivectors"]


def _at_most(name: str, value: int, maximum: int, status: int = 413) -> None:
    if value > maximum:
        raise LimitExceededError(name, value, maximum, status)


def _check_texts(texts: Sequence[str], what: str, max_chars: int) -> None:
    for i, text in enumerate(texts):
        _at_most(f"max_text_chars ({what} {i})", len(text), max_chars)


def _check_tokens(vectors: Sequence[Sequence[Sequence[float]]], max_tokens: int) -> None:
    for i, q in enumerate(vectors):
        _at_most(f"max_tokens_per_query (query {i})", len(q), max_tokens)


def check_search(req: SearchRequest, s: ServerSettings) -> int:
    """Check ``req`` against the limits; return the effective ``k``."""
    _at_most("max_queries_per_request", req.num_queries, s.max_queries_per_request)
    k = req.k if req.k is not None else s.default_k
    _at_most("max_k", k, s.max_k, 422)
    if req.candidates is not None:
        _at_most("max_candidates", req.candidates, s.max_candidates, 422)
    if req.queries is not None:
        _check_texts(req.queries, "query", s.max_text_chars)
    if req.vectors is not None:
        _check_tokens(req.vectors, s.max_tokens_per_query)
    return k


def check_rerank(req: RerankRequest, s: ServerSettings) -> None:
    """Check ``req`` against the limits."""
    _at_most("max_documents_per_request", len(req.documents), s.max_documents_per_request)
    if req.k is not None:
        _at_most("max_k", req.k, s.max_k, 422)
    if req.query is not None:
        _check_texts([req.query], "query", s.max_text_chars)
    if req.vectors is not None:
        _check_tokens([req.vectors], s.max_tokens_per_query)
    if req.by_text:
        texts = [d.text for d in req.documents if isinstance(d, TextDocument)]
        _check_texts(texts, "document", s.max_text_chars)


def vectors_to_multivectors(vectors: Sequence[Sequence[Sequence[float]]], dim: int) -> MultiVectors:
    """JSON token vectors -> :class:`MultiVectors` (float32), checked against ``dim``.

    Parameters
    ----------
    vectors : sequence of (tokens, dim) nested lists
        One item per query; every row must have ``dim`` numbers.
    dim : int
        The index's vector dimension.

    Raises
    ------
    DimensionMismatchError
        A row has another length than ``dim`` (names the query, row, and both values).
    InvalidVectorsError
        A query has no rows, or a value is not finite as float32.
    """
    arrays = []
    for i, q in enumerate(vectors):
        if len(q) == 0:
            raise InvalidVectorsError(f"query {i}: expected at least 1 token vector, got 0")
        for j, row in enumerate(q):
            if len(row) != dim:
                raise DimensionMismatchError(
                    f"query {i}, token {j}: expected dim {dim} (the index's), got {len(row)}"
                )
        with np.errstate(over="ignore", invalid="ignore"):
            arr = np.asarray(q, dtype=np.float64).astype(np.float32)
        if not np.isfinite(arr).all():
            raise InvalidVectorsError(
                f"query {i}: expected finite float32 values, got NaN/inf or a value beyond "
                f"±{float(np.finfo(np.float32).max):.3g}"
            )
        arrays.append(arr)
    return MultiVectors.from_arrays(arrays, dim=dim, dtype=np.float32)
