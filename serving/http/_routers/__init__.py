"""One router per resource: search, rerank, explain, health, stats, and the page at ``/``."""

from serving.http._routers import explain, health, page, rerank, search, stats

__all__ = ["explain", "health", "page", "rerank", "search", "stats"]
