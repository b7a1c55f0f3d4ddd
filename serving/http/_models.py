"""Typed request and response bodies of the HTTP API (pydantic v2).

Static constraints (``k >= 1``) live here; limits that come from the server
settings (``max_k``...) are checked in :mod:`serving.http._limits`, so that the
error names the setting and the value.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "TokenVectors",
    "SearchRequest",
    "HybridOptions",
    "SearchResponse",
    "QueryResult",
    "TextDocument",
    "RerankRequest",
    "RerankResponse",
    "RerankHit",
    "HealthResponse",
    "StatsResponse",
    "ErrorResponse",
]

#: One query's token vectors: shape (tokens, dim).
TokenVectors = Annotated[
    list[list[float]],
    Field(description="Token vectors of one query, shape (tokens, dim).", min_length=1),
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HybridOptions(_Body):
    """Fuse BM25 with late interaction (``serving._hybrid.HybridConfig``; unset = its default)."""

    fusion: Literal["rrf", "weighted"] | None = Field(
        default=None, description="Reciprocal rank fusion or min-max weighted scores.")
    depth: int | None = Field(default=None, ge=1, le=10_000,
                              description="Results taken from each list.")
    rrf_k: float | None = Field(default=None, ge=0, description="RRF rank offset.")
    weight: float | None = Field(default=None, ge=0, le=1,
                                 description="Weighted fusion: the late-interaction share.")
    rescore: bool | None = Field(default=None,
                                 description="Score every candidate with both signals first.")


class SearchRequest(_Body):
    """Search the index: either query texts or query token vectors, not both."""

    queries: list[str] | None = Field(
        default=None, description="Query texts (encoded by the server's encoder).", min_length=1
    )
    vectors: list[TokenVectors] | None = Field(
        default=None,
        description="Query token vectors, one (tokens, dim) list per query; skips encoding.",
        min_length=1,
    )
    k: int | None = Field(default=None, ge=1, description="Results per query (server default).")
    candidates: int | None = Field(
        default=None, ge=1, description="First-stage candidates re-ranked per query."
    )
    rerank: bool = Field(default=True, description="Re-rank candidates by exact MaxSim.")
    return_texts: bool = Field(default=True, description="Include stored document texts.")
    filter: dict[str, Any] | None = Field(
        default=None,
        description=(
            "Only documents matching it: {'field': f, 'eq': v}, {'field': f, 'in': [...]}, "
            "{'field': f, 'gte'|'gt'|'lte'|'lt': x}, {'and'|'or': [...]}, {'not': {...}}, "
            "{'ids': [...]}."
        ),
    )
    hybrid: HybridOptions | None = Field(
        default=None, description="Fuse BM25 with late interaction (text queries only)."
    )
    partial_results: bool = Field(
        default=False,
        description=(
            "Sharded servers (mvr serve --ray): when a shard does not answer, return the "
            "other shards' results flagged 'partial' instead of 503. A single-process "
            "server always answers complete."
        ),
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [
            {"queries": ["what causes fever?"], "k": 5},
            {"queries": ["what causes fever?"], "k": 5,
             "filter": {"and": [{"field": "year", "gte": 2010}, {"field": "lang", "eq": "en"}]},
             "hybrid": {"fusion": "rrf"}},
        ]},
    )

    @field_validator("filter")
    @classmethod
    def _valid_filter(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            from mvr._filters import parse_filter

            parse_filter(value)  # InvalidFilterError is a ValueError: 422 naming the clause
        return value

    @model_validator(mode="after")
    def _one_input(self) -> SearchRequest:
        if (self.queries is None) == (self.vectors is None):
            raise ValueError("give exactly one of 'queries' (texts) or 'vectors'")
        if self.hybrid is not None and self.queries is None:
            raise ValueError("'hybrid' needs query texts ('queries'): BM25 tokenizes them")
        return self

    @property
    def search_options(self) -> tuple[str | None, str | None]:
        """The filter and hybrid options as canonical JSON (part of the batching key)."""
        import json

        flt = None if self.filter is None else json.dumps(self.filter, sort_keys=True)
        hyb = (None if self.hybrid is None
               else json.dumps(self.hybrid.model_dump(exclude_none=True), sort_keys=True))
        return flt, hyb

    @property
    def num_queries(self) -> int:
        return len(self.queries if self.queries is not None else self.vectors or [])


class QueryResult(BaseModel):
    """Ranked documents of one query, best first."""

    ids: list[str]
    scores: list[float]
    texts: list[str | None] | None = Field(
        default=None, description="Stored texts (null where the index stores none)."
    )


class SearchResponse(BaseModel):
    results: list[QueryResult] = Field(description="One entry per query, in request order.")
    k: int
    candidates: int | None = Field(description="Candidates requested (null: index default).")
    timings: dict[str, float] = Field(
        default_factory=dict, description="Seconds per stage of the batch this request ran in."
    )
    batch_size: int = Field(default=0, description="Queries in the batch this request ran in.")
    partial: bool = Field(
        default=False,
        description="True when shards were down (partial_results=true): the results are "
                    "the best of the other shards' documents only.",
    )
    missing_shards: list[int] = Field(
        default_factory=list, description="The shards missing from a partial answer."
    )


class TextDocument(_Body):
    """A document given by its text (re-ranked after encoding by the server)."""

    text: str
    id: str | None = Field(default=None, description="Echoed back in the result.")


class RerankRequest(_Body):
    """Re-order documents by exact MaxSim against one query.

    ``documents`` are either ids of indexed documents (scored from the index's
    re-ranking table) or ``{"text": ...}`` objects (encoded by the server).
    """

    query: str | None = Field(default=None, description="The query text.")
    vectors: TokenVectors | None = Field(
        default=None, description="The query's token vectors (tokens, dim) instead of text."
    )
    documents: list[str] | list[TextDocument] = Field(
        min_length=1, description="Document ids, or objects with a 'text'."
    )
    k: int | None = Field(default=None, ge=1, description="Keep the best k (default: all).")
    return_texts: bool = Field(default=False, description="Include stored texts (ids only).")

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"query": "what causes fever?", "documents": ["doc-1", "doc-7"]},
                {"query": "what causes fever?", "documents": [{"text": "Fever is..."}]},
            ]
        },
    )

    @model_validator(mode="after")
    def _one_query(self) -> RerankRequest:
        if (self.query is None) == (self.vectors is None):
            raise ValueError("give exactly one of 'query' (text) or 'vectors'")
        return self

    @property
    def by_text(self) -> bool:
        return isinstance(self.documents[0], TextDocument)


class RerankHit(BaseModel):
    id: str | None = Field(description="Document id (null for a text given without id).")
    index: int = Field(description="Position of the document in the request.")
    score: float = Field(description="Exact MaxSim score.")
    text: str | None = None


class RerankResponse(BaseModel):
    results: list[RerankHit] = Field(description="Documents, best first.")
    timings: dict[str, float] = Field(default_factory=dict)
    batch_size: int = Field(default=0, description="Requests in the batch this one ran in.")


class HealthResponse(BaseModel):
    status: str = Field(description="'ok' while the index is loaded.")
    index_loaded: bool
    num_documents: int | None = None
    dim: int | None = None


class StatsResponse(BaseModel):
    uptime_s: float
    requests: dict[str, dict[str, int]] = Field(
        description="Per route, the count of responses by status code."
    )
    latency_ms: dict[str, dict[str, float]] = Field(
        description="Per route: p50, p95, p99, mean over the latest requests."
    )
    batching: dict[str, float] = Field(description="Batches, mean size, queue depth, rejections.")
    searcher: dict = Field(description="The searcher's own counters (Searcher.stats()).")


class ErrorResponse(BaseModel):
    detail: str = Field(description="What was wrong, naming the expected and the actual value.")
    error: str = Field(description="Error class, e.g. DocumentNotFoundError or LimitExceeded.")
    missing_ids: list[str] | None = Field(
        default=None, description="For 404: the document ids not in the index."
    )
    errors: list[dict] | None = Field(
        default=None, description="For a malformed body (422): each field's problem."
    )
