"""One router per resource: search, rerank, health, stats."""

from serving.http._routers import health, rerank, search, stats

__all__ = ["health", "rerank", "search", "stats"]
