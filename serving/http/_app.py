"""The FastAPI application factory and its lifespan (index and encoder load once, at startup)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
from fastapi import Depends, FastAPI

from mvr.errors import MVRError
from serving.http._batcher import MicroBatcher
from serving.http._engine import Engine
from serving.http._errors import install_error_handlers
from serving.http._middleware import BodyLimitMiddleware, RequestStats, StatsMiddleware
from serving.http._routers import explain, health, page, rerank, search, stats
from serving.http._service import Service, api_key_dependency
from serving.http._settings import ServerSettings

if TYPE_CHECKING:
    from serving._searcher import Searcher

__all__ = ["create_app", "open_searcher"]

log = logging.getLogger("serving.http")

ROUTES = ("/search", "/rerank", "/explain", "/health", "/stats")


def open_searcher(settings: ServerSettings) -> Searcher:
    """Open the index of ``settings`` (blocking): the searcher, with its encoder if asked.

    The encoder is ``settings.encoder`` (loaded with :func:`encoders.load`) or,
    by default, the one the index records, loaded now when
    ``settings.preload_encoder`` (else on the first text query).
    """
    from serving._searcher import Searcher  # heavy imports: at startup, never at import

    encoder = None
    if settings.encoder is not None:
        import encoders

        encoder = encoders.load(settings.encoder)
    searcher = Searcher.open(
        settings.index_path, encoder=encoder, mode=settings.mode, **settings.store_options
    )
    # An index built from vectors records no encoder: nothing to preload (vector queries only).
    if settings.preload_encoder and encoder is None and searcher.manifest.get("encoder"):
        try:
            _ = searcher.encoder
        except MVRError as e:
            searcher.close()
            hint = (f"{e}; serve with --encoder PATH (MVR_ENCODER), or --no-preload-encoder "
                    "(MVR_PRELOAD_ENCODER=false) to answer vector queries only")
            raise type(e)(hint) from e
        except BaseException:
            searcher.close()
            raise
    return searcher


def _lifespan(settings: ServerSettings, stats_: RequestStats,
              opener: Callable[[ServerSettings], Any]) -> Any:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        searcher = await anyio.to_thread.run_sync(opener, settings)
        engine = Engine(searcher)
        batcher = MicroBatcher(
            engine.run,
            window_s=settings.batch_window_ms / 1000.0,
            max_batch_size=settings.max_batch_size,
            queue_size=settings.queue_size,
            concurrency=settings.batch_concurrency,
            retry_after_s=settings.retry_after_s,
        )
        await batcher.start()
        app.state.service = Service(settings, searcher, batcher, stats_)
        log.info(
            "serving %s: %d documents, dim %d",
            settings.index_path, searcher.num_documents, searcher.dim,
        )
        try:
            yield
        finally:
            app.state.service = None
            await batcher.stop()
            searcher.close()

    return lifespan


def create_app(settings: ServerSettings, *,
               searcher_factory: Callable[[ServerSettings], Any] | None = None) -> FastAPI:
    """Build the HTTP application serving ``settings.index_path``.

    Nothing is loaded here: the index (and encoder) load in the lifespan
    handler, when the server starts.

    Parameters
    ----------
    settings : ServerSettings
        Index, encoder, limits, batching, API key.
    searcher_factory : callable, optional
        Opens the searcher at startup (blocking; default :func:`open_searcher`). The
        sharded server (``mvr serve --ray``) passes one that returns a
        :class:`serving._sharded.ShardedSearcher` over Ray Serve shard replicas.

    Returns
    -------
    FastAPI
        Routes ``POST /search``, ``POST /rerank``, ``POST /explain``, ``GET /health``,
        ``GET /stats``, and the search page at ``GET /``;
        OpenAPI docs at ``/docs`` and ``/openapi.json``.

    Examples
    --------
    >>> app = create_app(ServerSettings(index_path="my-index"))  # doctest: +SKIP
    >>> uvicorn.run(app, host="127.0.0.1", port=8000)  # doctest: +SKIP
    """
    from mvr import __version__

    request_stats = RequestStats(ROUTES, settings.latency_window)
    app = FastAPI(
        title="mvr",
        version=__version__,
        summary="Multi-vector late-interaction search and exact MaxSim re-ranking.",
        lifespan=_lifespan(settings, request_stats, searcher_factory or open_searcher),
    )
    app.state.settings = settings
    app.state.service = None
    install_error_handlers(app)
    deps = []
    if settings.api_key is not None:
        deps.append(Depends(api_key_dependency(settings.api_key.get_secret_value())))
    app.include_router(search.router, dependencies=deps)
    app.include_router(rerank.router, dependencies=deps)
    app.include_router(explain.router, dependencies=deps)
    app.include_router(stats.router, dependencies=deps)
    app.include_router(health.router)
    app.include_router(page.router)  # GET /: the search page (static; its calls need the key)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(StatsMiddleware, stats=request_stats)
    return app
