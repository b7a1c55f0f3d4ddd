"""``GET /stats``: searcher counters, request counts, latency percentiles, batching."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends

from serving.http._models import StatsResponse
from serving.http._service import ERROR_RESPONSES, Service, get_service

__all__ = ["router"]

router = APIRouter(tags=["stats"])


def _jsonable(value: Any) -> Any:
    """numpy scalars and arrays, tuples, nested dicts -> plain JSON types."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


@router.get(
    "/stats",
    response_model=StatsResponse,
    responses={k: v for k, v in ERROR_RESPONSES.items() if k in (401, 503)},
    summary="Server and searcher statistics",
)
def stats(service: Service = Depends(get_service)) -> StatsResponse:
    # a plain def: FastAPI runs it in its thread pool, off the event loop (the searcher's
    # and the store's counters take locks)
    counts, latency = service.stats.snapshot()
    return StatsResponse(
        uptime_s=time.time() - service.stats.started,
        requests=counts,
        latency_ms=latency,
        batching=service.batcher.stats(),
        searcher=_jsonable(service.searcher.stats()),
    )
