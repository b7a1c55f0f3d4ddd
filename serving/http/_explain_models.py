"""Typed request and response bodies of ``POST /explain`` (pydantic v2)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["ExplainRequest", "ExplainResponse", "ExplainDocumentToken", "ExplainMatch"]


class ExplainRequest(BaseModel):
    """Explain the exact MaxSim score of one indexed document for one query text."""

    query: str = Field(min_length=1, description="The query text (not blank).")
    id: str = Field(min_length=1, description="Id of an indexed document.")

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"query": "what causes fever?", "id": "doc-7"}]},
    )

    @field_validator("query")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError(f"expected a query with at least one non-space character, got {v!r}")
        return v


class ExplainDocumentToken(BaseModel):
    """One wordpiece of the document, in sequence order (special tokens included)."""

    text: str = Field(description="The wordpiece, as the tokenizer writes it ('##ing', '[CLS]').")
    start: int | None = Field(
        description="Character offset in the document text where it begins (null: special token)."
    )
    end: int | None = Field(description="Character offset just past its end (null: special token).")
    vector: int | None = Field(
        description="Index of the stored (pooled) vector this wordpiece was merged into."
    )


class ExplainMatch(BaseModel):
    """One query token's contribution: its max similarity over the document's stored vectors."""

    query_token: str = Field(description="The query token ('[CLS]', 'fever', '[MASK]'...).")
    vector: int = Field(description="Index of the stored vector with the highest similarity.")
    similarity: float = Field(description="That similarity: this token's term of the score.")
    document_tokens: list[int] = Field(
        description="Indexes (into document_tokens) of the wordpieces pooled into that vector."
    )
    best_token: int | None = Field(
        description="Of those, the wordpiece whose own unpooled vector is most similar."
    )


class ExplainResponse(BaseModel):
    """Late-interaction explanation: score = sum over query tokens of their max similarity."""

    id: str
    query: str
    text: str | None = Field(description="The stored document text (null: none stored).")
    query_tokens: list[str] = Field(description="One entry per query vector.")
    document_tokens: list[ExplainDocumentToken] = Field(
        description="One entry per document wordpiece vector before pooling (empty without text)."
    )
    matches: list[ExplainMatch] = Field(description="One entry per query token, in order.")
    num_vectors: int = Field(description="Stored (pooled) vectors of the document.")
    total: float = Field(description="Sum of the matches' similarities.")
    score: float = Field(description="The searcher's exact MaxSim score (what /search returns).")
    vectors: Literal["reencoded", "stored"] = Field(
        description=(
            "'reencoded': the text re-encoded and re-pooled reproduced the stored vectors, so "
            "each vector's wordpieces are exact. 'stored': it did not; similarities use the "
            "stored vectors and each is aligned with the nearest re-pooled cluster."
        )
    )
    alignment: float | None = Field(
        description="With vectors='stored': the smallest cosine of a stored vector to its cluster."
    )
    truncated: bool = Field(description="The text is longer than the encoder's document budget.")
    pooling: dict[str, int | bool] = Field(
        description="The index's pooling: pool_factor, protected_tokens, normalize."
    )
