"""``GET /``: the search page (plain HTML + one script + one stylesheet, no build step).

The page calls ``POST /search`` and ``POST /explain`` on the same server. Its
Content-Security-Policy allows nothing from another origin: no external asset
can load, and the script can only talk to this server.
"""

from __future__ import annotations

import functools
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response

__all__ = ["router", "CSP"]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

router = APIRouter(tags=["page"], include_in_schema=False)


@functools.cache
def _asset(name: str) -> bytes:
    return resources.files("serving.http").joinpath("static", name).read_bytes()


def _page(name: str, media_type: str) -> Response:
    return Response(
        _asset(name), media_type=media_type,
        headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache",
                 "X-Content-Type-Options": "nosniff"},
    )


@router.get("/", summary="The search page")
async def index() -> Response:
    return _page("index.html", "text/html; charset=utf-8")


@router.get("/ui/search.js")
async def script() -> Response:
    return _page("search.js", "text/javascript; charset=utf-8")


@router.get("/ui/search.css")
async def stylesheet() -> Response:
    return _page("search.css", "text/css; charset=utf-8")
