"""Server settings (pydantic-settings): constructor arguments, then ``MVR_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ServerSettings"]


class ServerSettings(BaseSettings):
    """Everything :func:`serving.http.create_app` and ``mvr serve`` need.

    Every field can also come from the environment with the ``MVR_`` prefix
    (``MVR_INDEX_PATH``, ``MVR_API_KEY``, ``MVR_MAX_K``, ``MVR_STORE_OPTIONS='{"...": 1}'``).
    Unknown keyword arguments are refused rather than ignored.

    Examples
    --------
    >>> s = ServerSettings(index_path="idx", max_k=50)
    >>> s.host, s.port, s.max_k
    ('127.0.0.1', 8000, 50)
    """

    model_config = SettingsConfigDict(env_prefix="MVR_", extra="forbid", frozen=True)

    # --- what to serve
    index_path: Path = Field(description="Directory of the mvr index to serve.")
    encoder: str | None = Field(
        default=None,
        description="Encoder name or path (encoders.load); default: the one recorded in the index.",
    )
    preload_encoder: bool = Field(
        default=True,
        description="Load the encoder at startup (else on the first text query).",
    )
    mode: Literal["memory", "mmap", "ssd"] = Field(
        default="memory", description="Where the re-ranking table lives (Searcher.open mode)."
    )
    store_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra keyword arguments of Searcher.open for the store (e.g. cache size).",
    )

    # --- where to listen
    host: str = Field(default="127.0.0.1", description="Interface to bind (loopback by default).")
    port: int = Field(default=8000, ge=0, le=65535)
    api_key: SecretStr | None = Field(
        default=None, description="If set, every endpoint but /health needs header X-API-Key."
    )

    # --- request limits
    default_k: int = Field(default=10, ge=1)
    max_k: int = Field(default=1000, ge=1)
    max_candidates: int = Field(default=10_000, ge=1)
    max_queries_per_request: int = Field(default=64, ge=1)
    max_documents_per_request: int = Field(default=1000, ge=1)
    max_tokens_per_query: int = Field(default=512, ge=1)
    max_text_chars: int = Field(default=10_000, ge=1)
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)

    # --- micro-batching
    batch_window_ms: float = Field(
        default=1.5,
        ge=0.0,
        le=1000.0,
        description="How long the batcher waits for more requests; 0 turns batching off.",
    )
    max_batch_size: int = Field(default=64, ge=1, description="Most queries in one batch.")
    queue_size: int = Field(
        default=1024, ge=1, description="Waiting requests before new ones get 503."
    )
    batch_concurrency: int = Field(
        default=1, ge=1, description="Batches executed at the same time (worker threads)."
    )
    retry_after_s: int = Field(default=1, ge=0, description="Retry-After of a 503 when full.")

    # --- statistics
    latency_window: int = Field(
        default=10_000, ge=1, description="Latest requests the latency percentiles cover."
    )

    @model_validator(mode="after")
    def _check(self) -> ServerSettings:
        if self.default_k > self.max_k:
            raise ValueError(f"default_k ({self.default_k}) exceeds max_k ({self.max_k})")
        return self
