"""CORS for the website chat API, so a widget served from another origin can call it.

Only the origins in CHAT_ALLOWED_ORIGINS, compared exactly (no wildcard: the identity headers are
credentials), get CORS headers; any other origin gets none, and the browser keeps the answer
from the page. A preflight (`OPTIONS` with `Access-Control-Request-Method`) under /api/ from an
allowed origin is answered here, 204, with the methods its route serves and the request headers
the API reads; every other /api/ response to an allowed origin carries
`Access-Control-Allow-Origin` and exposes `Retry-After` (and `X-Anonymous-Id`) to the page. The
headers are added when the response is prepared, so a Server-Sent Events stream has them too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web

REQUEST_HEADERS = ("Content-Type", "X-Customer-Token", "X-Anonymous-Id", "Last-Event-ID")
EXPOSED_HEADERS = ("Retry-After", "X-Anonymous-Id")
MAX_AGE_S = 600
ORIGINS: web.AppKey[frozenset[str]] = web.AppKey("cors_origins")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _api(request: web.Request) -> bool:
    return request.path.startswith("/api/")


def _allowed(request: web.Request) -> str | None:
    origin = request.headers.get("Origin")
    return origin if origin is not None and origin in request.app[ORIGINS] else None


def preflight_headers(origin: str, methods: Iterable[str]) -> dict[str, str]:
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": ", ".join(sorted({*methods, "OPTIONS"})),
        "Access-Control-Allow-Headers": ", ".join(REQUEST_HEADERS),
        "Access-Control-Max-Age": str(MAX_AGE_S),
        "Vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
    }


@web.middleware
async def preflight(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer a preflight from an allowed origin for a route that exists; anything else goes on
    (a preflight from an unlisted origin meets the route's 405, with no CORS headers)."""
    origin = _allowed(request) if _api(request) else None
    if origin is None or request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
        return await handler(request)
    refused = request.match_info.http_exception
    if not isinstance(refused, web.HTTPMethodNotAllowed):  # no such route (404): say so, as for any method
        return await handler(request)
    return web.Response(status=204, headers=preflight_headers(origin, refused.allowed_methods))


async def _on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    if not _api(request) or not request.app[ORIGINS] or "Access-Control-Allow-Origin" in response.headers:
        return
    if "Origin" not in response.headers.get("Vary", ""):
        response.headers.add("Vary", "Origin")  # the answer depends on the Origin header (caches)
    origin = _allowed(request)
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = ", ".join(EXPOSED_HEADERS)


def install(app: web.Application, *, origins: Iterable[str]) -> None:
    """Serve CORS for `origins` (the middleware goes first, so it sees every /api/ request)."""
    app[ORIGINS] = frozenset(origins)
    app.middlewares.insert(0, preflight)
    app.on_response_prepare.append(_on_prepare)
