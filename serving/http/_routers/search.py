"""``POST /search``: top-k documents per query, from texts or token vectors."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Depends

from serving.http._batcher import Job
from serving.http._engine import SearchOutput, SearchPayload
from serving.http._inputs import check_search, vectors_to_multivectors
from serving.http._models import QueryResult, SearchRequest, SearchResponse
from serving.http._service import ERROR_RESPONSES, Service, get_service

__all__ = ["router"]

router = APIRouter(tags=["search"])

#: Vector inputs with more numbers than this are converted in a worker thread.
_OFFLOAD_NUMBERS = 32_768


@router.post(
    "/search",
    response_model=SearchResponse,
    responses=ERROR_RESPONSES,
    summary="Search the index",
    description=(
        "First-stage candidates by FDE, re-ranked by exact MaxSim. Give query texts "
        "(`queries`) or token vectors (`vectors`, one (tokens, dim) list per query). "
        "Concurrent requests are micro-batched. A sharded server answers 503 when a shard "
        "is down, or with `partial_results` the other shards' results flagged `partial`."
    ),
)
async def search(req: SearchRequest, service: Service = Depends(get_service)) -> SearchResponse:
    k = check_search(req, service.settings)
    vectors = None
    if req.vectors is not None:
        dim = int(service.searcher.dim)
        numbers = sum(len(q) for q in req.vectors) * dim
        if numbers > _OFFLOAD_NUMBERS:
            vectors = await anyio.to_thread.run_sync(vectors_to_multivectors, req.vectors, dim)
        else:
            vectors = vectors_to_multivectors(req.vectors, dim)
    payload = SearchPayload(req.queries, vectors, req.return_texts)
    job = Job("search", (k, req.candidates, req.rerank, *req.search_options,
                         req.partial_results), payload, size=req.num_queries)
    out: SearchOutput = await service.batcher.submit(job)
    results = [
        QueryResult(
            ids=ids,
            scores=scores.tolist(),
            texts=out.texts[q] if out.texts is not None else None,
        )
        for q, (ids, scores) in enumerate(zip(out.ids, out.scores, strict=True))
    ]
    timings = {**out.timings, "queue_wait": job.started - job.submitted}
    return SearchResponse(
        results=results, k=k, candidates=req.candidates, timings=timings,
        batch_size=out.batch_size, partial=out.partial, missing_shards=out.missing_shards,
    )
