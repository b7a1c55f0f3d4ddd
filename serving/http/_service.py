"""What the routes share: the settings, the searcher, the batcher, the counters."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Security
from fastapi.security import APIKeyHeader

from serving.http._batcher import MicroBatcher
from serving.http._errors import ShuttingDownError, UnauthorizedError
from serving.http._middleware import RequestStats
from serving.http._models import ErrorResponse
from serving.http._settings import ServerSettings

__all__ = ["Service", "get_service", "api_key_dependency", "ERROR_RESPONSES", "ERROR_404"]

API_KEY_HEADER = "X-API-Key"

#: OpenAPI documentation of the error answers every data route may give.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing or wrong X-API-Key."},
    413: {"model": ErrorResponse, "description": "A size limit was exceeded (named)."},
    422: {"model": ErrorResponse, "description": "Invalid body or value (named)."},
    503: {"model": ErrorResponse, "description": "Queue full or shutting down; see Retry-After."},
}

#: The 404 of routes that look documents up by id.
ERROR_404: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "Unknown document ids (in missing_ids)."},
}


@dataclass
class Service:
    """State created by the lifespan handler and read by the routes."""

    settings: ServerSettings
    searcher: Any
    batcher: MicroBatcher
    stats: RequestStats


async def get_service(request: Request) -> Service:
    """FastAPI dependency: the running service (503 before startup / after shutdown)."""
    service = getattr(request.app.state, "service", None)
    if service is None:
        raise ShuttingDownError("the index is not loaded (server starting or stopping); retry")
    return service


def api_key_dependency(expected: str) -> Any:
    """A dependency that accepts a request only with header ``X-API-Key: <expected>``."""
    header = APIKeyHeader(
        name=API_KEY_HEADER, auto_error=False, description="The server's API key."
    )
    want = expected.encode()

    async def require_api_key(key: str | None = Security(header)) -> None:
        if key is None:
            raise UnauthorizedError(f"missing API key: send header {API_KEY_HEADER}")
        if not secrets.compare_digest(key.encode(), want):
            raise UnauthorizedError(f"wrong API key in header {API_KEY_HEADER}")

    return require_api_key
