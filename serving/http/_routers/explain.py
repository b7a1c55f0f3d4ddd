"""``POST /explain``: which document tokens each query token matched, and their similarities.

The work (encode the query and the document text, pool, score) runs in a worker
thread, at most ``EXPLAIN_CONCURRENCY`` at a time, never on the event loop.
"""

from __future__ import annotations

import functools

import anyio
from fastapi import APIRouter, Depends, Request

from serving.http._errors import LimitExceededError
from serving.http._explain_models import (
    ExplainDocumentToken,
    ExplainMatch,
    ExplainRequest,
    ExplainResponse,
)
from serving.http._service import ERROR_404, ERROR_RESPONSES, Service, get_service

__all__ = ["router", "EXPLAIN_CONCURRENCY"]

#: Explanations computed at once (each encodes a document: heavier than a search).
EXPLAIN_CONCURRENCY = 2

router = APIRouter(tags=["explain"])


def _limiter(request: Request) -> anyio.CapacityLimiter:
    limiter = getattr(request.app.state, "explain_limiter", None)
    if limiter is None:
        limiter = anyio.CapacityLimiter(EXPLAIN_CONCURRENCY)
        request.app.state.explain_limiter = limiter
    return limiter


@router.post(
    "/explain",
    response_model=ExplainResponse,
    responses={**ERROR_RESPONSES, **ERROR_404},
    summary="Explain a document's MaxSim score token by token",
    description=(
        "For one query text and one indexed document id: the query tokens, the document's "
        "wordpieces with character spans, and for each query token the stored (pooled) "
        "vector it matched best, the wordpieces pooled into it, and the similarity. "
        "`total` (the sum of the similarities) equals `score`, the exact MaxSim score "
        "/search gives. Indexed vectors are pooled clusters of wordpieces; `vectors` says "
        "whether re-encoding the stored text reproduced them exactly ('reencoded') or the "
        "stored vectors were scored and aligned to the nearest cluster ('stored')."
    ),
)
async def explain(
    req: ExplainRequest, request: Request, service: Service = Depends(get_service)
) -> ExplainResponse:
    limit = service.settings.max_text_chars
    if len(req.query) > limit:
        raise LimitExceededError("max_text_chars (query)", len(req.query), limit)
    from serving._explain import explain as explain_document  # torch-backed: on first use

    work = functools.partial(explain_document, service.searcher, req.query, req.id)
    e = await anyio.to_thread.run_sync(work, limiter=_limiter(request))
    return ExplainResponse(
        id=e.id,
        query=req.query,
        text=e.text,
        query_tokens=e.query_tokens,
        document_tokens=[
            ExplainDocumentToken(text=t.text, start=t.start, end=t.end, vector=t.vector)
            for t in e.document_tokens
        ],
        matches=[
            ExplainMatch(query_token=m.token, vector=m.vector, similarity=m.similarity,
                         document_tokens=m.document_tokens, best_token=m.best_token)
            for m in e.matches
        ],
        num_vectors=e.num_vectors,
        total=e.total,
        score=e.score,
        vectors=e.vectors,
        alignment=e.alignment,
        truncated=e.truncated,
        pooling=e.pooling,
    )
