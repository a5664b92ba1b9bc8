"""Serving: HTTP (`POST /slack/events`, the website chat API under /api, `GET /healthz`, `GET
/metrics`) or Socket Mode, plus the workers of the one queue and a housekeeping loop (staff
board, SLA re-announcements, messages written by acts elsewhere, expired confirmations, queue
gauges).

Several replicas may run this against one PostgreSQL behind a load balancer in HTTP mode: all
coordination goes through the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from datetime import timedelta

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from sqlalchemy import delete

from bot.host import Host
from bot.slack.app import build_app
from bot.slack.runtime import Runtime
from bot.web import api as web_api
from bot.web.schemas import RATE_WINDOW_S
from storage import metrics
from storage.models import WebRateLimit
from tools import refunds

log = logging.getLogger(__name__)
HOUSEKEEPING_SECONDS = 5.0
MAX_BODY = 1024 * 1024


def web_app(rt: Runtime, slack: AsyncApp | None = None) -> web.Application:
    bolt = slack or build_app(rt)

    async def slack_events(request: web.Request) -> web.Response:
        bolt_request = await to_bolt_request(request)
        return await to_aiohttp_response(await bolt.async_dispatch(bolt_request))

    async def healthz(request: web.Request) -> web.Response:
        ok = await rt.store.ping()
        return web.json_response({"ok": ok, "replica": rt.host.owner}, status=200 if ok else 503)

    async def metrics_endpoint(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics.REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post("/slack/events", slack_events)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_endpoint)
    web_api.add_routes(app, rt.host)  # the website chat widget's API, beside /slack/events
    return app


async def housekeeping(rt: Runtime) -> None:
    while True:
        try:
            await housekeeping_once(rt)
        except Exception:
            log.exception("housekeeping failed")
        await asyncio.sleep(HOUSEKEEPING_SECONDS)


async def housekeeping_once(rt: Runtime) -> None:
    await rt.board.sweep()
    await rt.board.sla()
    await rt.out.deliver_loose()  # what acts on other replicas, the shell or MCP said to Slack threads
    await refunds.expire_due(rt.deps)
    await prune_rate_limits(rt.host)
    depth, age = await rt.host.queue.depth()
    metrics.INBOX_DEPTH.set(depth)
    metrics.INBOX_AGE.set(age)


async def prune_rate_limits(host: Host) -> None:
    async with host.store.write() as s:  # the web API's rate-limit windows that have closed
        await s.execute(
            delete(WebRateLimit).where(WebRateLimit.window_start < host.clock.now() - timedelta(seconds=RATE_WINDOW_S))
        )


async def serve(rt: Runtime, *, host: str, port: int, socket_mode: bool) -> None:
    """Run until SIGTERM or SIGINT."""
    await rt.identify()
    for result in await refunds.recover(rt.deps):  # refunds a crash left `processing`
        log.info("recovered refund: %s", result.data.get("refund_id"))
    slack = build_app(rt)
    runner = web.AppRunner(web_app(rt, slack), handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1] if site._server and site._server.sockets else port  # type: ignore[union-attr]
    socket_handler = None
    if socket_mode:
        from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

        token = rt.settings.slack_app_token.get_secret_value() if rt.settings.slack_app_token else ""
        socket_handler = AsyncSocketModeHandler(slack, token)
        await socket_handler.connect_async()
    rt.workers.start()
    keeper = asyncio.create_task(housekeeping(rt), name="housekeeping")
    mode = "socket mode" if socket_mode else "http"
    print(f"supportbot listening on http://{host}:{bound} ({mode}, replica {rt.host.owner})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
        await rt.workers.stop()
        await rt.drain()
        if socket_handler is not None:
            await socket_handler.close_async()
        await runner.cleanup()
        await rt.store.dispose()
        sys.stdout.flush()
