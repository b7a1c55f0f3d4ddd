"""Pure-ASGI middleware: the request-body size limit and per-route statistics."""

from __future__ import annotations

import json
import time
from collections import Counter, deque
from typing import Any

import numpy as np

__all__ = ["BodyLimitMiddleware", "RequestStats", "StatsMiddleware"]

Scope = dict[str, Any]


async def _send_json(send: Any, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


class BodyLimitMiddleware:
    """Refuse bodies over ``max_bytes`` with 413, before anything parses them.

    A declared ``Content-Length`` over the limit is refused at once; otherwise
    the body is read (at most ``max_bytes`` + one chunk) and replayed to the app.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)

    def _too_large(self, got: str) -> dict:
        return {
            "detail": f"max_body_bytes: got {got} bytes, the server allows at most {self.max_bytes}",
            "error": "LimitExceededError",
        }

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _send_json(
                        send, 400, {"detail": "invalid Content-Length", "error": "BadRequest"}
                    )
                    return
                if declared > self.max_bytes:
                    await _send_json(send, 413, self._too_large(str(declared)))
                    return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _send_json(send, 413, self._too_large(f"more than {self.max_bytes}"))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class RequestStats:
    """Counts of responses by route and status, and latencies of the latest requests."""

    def __init__(self, routes: tuple[str, ...], window: int) -> None:
        self.routes = routes
        self.counts: dict[str, Counter[int]] = {r: Counter() for r in (*routes, "other")}
        self.latencies: dict[str, deque[float]] = {
            r: deque(maxlen=window) for r in (*routes, "other")
        }
        self.started = time.time()

    def record(self, path: str, status: int, seconds: float) -> None:
        route = path if path in self.counts else "other"
        self.counts[route][status] += 1
        self.latencies[route].append(seconds)

    def snapshot(self) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, float]]]:
        counts = {r: {str(s): n for s, n in sorted(c.items())} for r, c in self.counts.items()}
        lat: dict[str, dict[str, float]] = {}
        for route, values in self.latencies.items():
            if not values:
                continue
            arr = np.fromiter(values, dtype=np.float64) * 1000.0
            p50, p95, p99 = np.percentile(arr, [50, 95, 99])
            lat[route] = {
                "p50": float(p50), "p95": float(p95), "p99": float(p99),
                "mean": float(arr.mean()), "count": float(arr.size),
            }
        return counts, lat


class StatsMiddleware:
    """Record every HTTP response's status and latency into a :class:`RequestStats`."""

    def __init__(self, app: Any, stats: RequestStats) -> None:
        self.app = app
        self.stats = stats

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def send_wrapper(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.stats.record(scope["path"], status, time.perf_counter() - t0)
