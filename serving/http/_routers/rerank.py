"""``POST /rerank``: re-order given documents by exact MaxSim against one query."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from serving.http._batcher import Job
from serving.http._engine import RerankOutput, RerankPayload
from serving.http._inputs import check_rerank, vectors_to_multivectors
from serving.http._models import RerankHit, RerankRequest, RerankResponse, TextDocument
from serving.http._service import ERROR_404, ERROR_RESPONSES, Service, get_service

__all__ = ["router"]

router = APIRouter(tags=["rerank"])


@router.post(
    "/rerank",
    response_model=RerankResponse,
    responses={**ERROR_RESPONSES, **ERROR_404},
    summary="Re-rank documents by exact MaxSim",
    description=(
        "The re-ranking service for your own candidate generator. `documents` are ids "
        "of indexed documents (scored from the index's re-ranking table; unknown ids -> "
        "404 listing them) or `{\"text\": ...}` objects (encoded by the server)."
    ),
)
async def rerank(req: RerankRequest, service: Service = Depends(get_service)) -> RerankResponse:
    check_rerank(req, service.settings)
    vectors = None
    if req.vectors is not None:
        vectors = vectors_to_multivectors([req.vectors], int(service.searcher.dim))
    if req.by_text:
        docs = [d for d in req.documents if isinstance(d, TextDocument)]
        payload = RerankPayload(req.query, vectors, None, [d.text for d in docs], req.k, False)
        out: RerankOutput = await service.batcher.submit(Job("rerank_texts", None, payload))
        assert out.order is not None
        hits = [
            RerankHit(id=docs[i].id, index=int(i), score=float(s))
            for i, s in zip(out.order, out.scores, strict=True)
        ]
    else:
        given = [d for d in req.documents if isinstance(d, str)]
        first = {d: i for i, d in reversed(list(enumerate(given)))}
        ids = list(first)  # unique, in request order
        payload = RerankPayload(req.query, vectors, ids, None, req.k, req.return_texts)
        out = await service.batcher.submit(Job("rerank_ids", None, payload))
        texts = out.texts or [None] * len(out.ids or [])
        hits = [
            RerankHit(id=d, index=first[d], score=float(s), text=t)
            for d, s, t in zip(out.ids or [], out.scores, texts, strict=True)
        ]
    return RerankResponse(results=hits, timings=out.timings, batch_size=out.batch_size)
