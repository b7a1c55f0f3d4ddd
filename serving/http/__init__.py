"""The HTTP service: search and exact MaxSim re-ranking over an mvr index.

``create_app(ServerSettings(index_path=...))`` builds a FastAPI app whose
lifespan opens the index once; ``mvr serve DIR`` runs it under uvicorn on
127.0.0.1. Routes: ``POST /search``, ``POST /rerank``, ``GET /health``,
``GET /stats``. Concurrent requests are micro-batched.
"""

from serving.http._app import create_app, open_searcher
from serving.http._settings import ServerSettings

__all__ = ["create_app", "open_searcher", "ServerSettings"]
