"""``GET /health``: liveness, and whether the index is loaded."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from serving.http._models import HealthResponse

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get(
    "/health",
    response_model=HealthResponse,
    responses={503: {"model": HealthResponse, "description": "Alive, index not loaded."}},
    summary="Liveness and readiness",
)
async def health(request: Request) -> HealthResponse | JSONResponse:
    service = getattr(request.app.state, "service", None)
    if service is None:
        body = HealthResponse(status="starting", index_loaded=False)
        return JSONResponse(body.model_dump(), status_code=503)
    return HealthResponse(
        status="ok",
        index_loaded=True,
        num_documents=int(service.searcher.num_documents),
        dim=int(service.searcher.dim),
    )
