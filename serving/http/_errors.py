"""Map errors to HTTP answers: domain errors become 4xx with their message.

Bad input never answers 500: mvr's errors name what was wrong and map to a 4xx
code here; only server-side failures (a missing model file, an unreadable
table) answer 503, and a genuine bug answers a plain 500 without internals.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from mvr import errors
from serving._sharded import ShardUnavailableError

__all__ = [
    "LimitExceededError",
    "QueueFullError",
    "ShuttingDownError",
    "UnauthorizedError",
    "install_error_handlers",
    "status_for",
]

log = logging.getLogger("serving.http")


class LimitExceededError(errors.MVRError, ValueError):
    """A request exceeds a server limit; ``status`` is 413 (size) or 422 (value)."""

    def __init__(self, limit: str, value: int, maximum: int, status: int = 413) -> None:
        super().__init__(f"{limit}: got {value}, the server allows at most {maximum}")
        self.limit, self.value, self.maximum, self.status = limit, value, maximum, status


class QueueFullError(errors.MVRError, RuntimeError):
    """The micro-batching queue is full: the client should retry later (503)."""

    def __init__(self, size: int, retry_after_s: int) -> None:
        super().__init__(
            f"server busy: {size} requests already waiting (queue_size={size}); "
            f"retry after {retry_after_s} s"
        )
        self.retry_after_s = retry_after_s


class ShuttingDownError(errors.MVRError, RuntimeError):
    """The server is stopping; the request was not run (503)."""

    retry_after_s = 1


class UnauthorizedError(errors.MVRError, PermissionError):
    """A missing or wrong API key (401)."""


# Order matters: the first matching class wins (subclasses before bases).
_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (UnauthorizedError, 401),
    (QueueFullError, 503),
    (ShuttingDownError, 503),
    (ShardUnavailableError, 503),  # a shard of a sharded searcher did not answer
    (errors.DocumentNotFoundError, 404),
    (errors.IndexNotFoundError, 503),
    (errors.ModelFileNotFoundError, 503),
    (errors.CorruptIndexError, 503),
    (errors.TokenReadError, 503),
    (errors.RowOutOfRangeError, 500),  # rows come from the searcher: never the client's fault
    (errors.IndexLockedError, 503),
    (errors.EncoderMismatchError, 409),
    (errors.DimensionMismatchError, 422),
    (errors.InvalidVectorsError, 422),
    (errors.EmptyInputError, 422),
    (errors.ConfigError, 422),
    (errors.InvalidFilterError, 422),
    (errors.MVRError, 400),
)


def status_for(exc: BaseException) -> int:
    """The HTTP status code an mvr error maps to."""
    if isinstance(exc, LimitExceededError):
        return exc.status
    for cls, code in _STATUS:
        if isinstance(exc, cls):
            return code
    return 500


def _missing_ids(exc: BaseException) -> list[str] | None:
    for name in ("ids", "missing", "missing_ids"):
        value = getattr(exc, name, None)
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return list(value)
    return None


def error_body(exc: BaseException) -> dict:
    body: dict = {"detail": str(exc), "error": type(exc).__name__}
    if isinstance(exc, errors.DocumentNotFoundError):
        body["missing_ids"] = _missing_ids(exc)
    return body


async def _mvr_error(request: Request, exc: Exception) -> JSONResponse:
    code = status_for(exc)
    headers = None
    if isinstance(exc, QueueFullError | ShuttingDownError | ShardUnavailableError):
        headers = {"Retry-After": str(exc.retry_after_s)}
    elif isinstance(exc, UnauthorizedError):
        headers = {"WWW-Authenticate": 'APIKey header="X-API-Key"'}
    if code >= 500:
        log.warning("%s %s -> %d: %s", request.method, request.url.path, code, exc)
    return JSONResponse(error_body(exc), status_code=code, headers=headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    # jsonable: pydantic's ctx may hold exception objects; keep loc/msg/type/input only.
    raw = exc.errors() if isinstance(exc, RequestValidationError) else []
    details = [{k: e[k] for k in ("loc", "msg", "type") if k in e} for e in raw]
    summary = "; ".join(
        f"{'.'.join(str(p) for p in d.get('loc', ()))}: {d.get('msg', '')}" for d in details
    )
    return JSONResponse(
        {"detail": summary or "invalid request", "error": "RequestValidationError",
         "errors": details},
        status_code=422,
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(errors.MVRError, _mvr_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
