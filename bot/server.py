"""Serving: HTTP (`POST /slack/events`, `GET /healthz`, `GET /metrics`, the website chat API) or
Socket Mode, plus the workers of the one queue and a housekeeping loop (staff board, SLA
re-announcements, messages written by acts elsewhere, expired confirmations, queue gauges,
retention). With no Slack settings at all the website chat API is served alone, with Slack off.

Several replicas may run this against one PostgreSQL behind a load balancer in HTTP mode: all
coordination goes through the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp

from bot.host import Host
from bot.slack.app import build_app
from bot.slack.runtime import Runtime
from bot.web import api as web_api
from desk import customer
from storage import metrics
from storage.retention import prune_all

log = logging.getLogger(__name__)
HOUSEKEEPING_SECONDS = 5.0
PRUNE_EVERY = 12  # housekeeping rounds between retention passes (about a minute)
MAX_BODY = 1024 * 1024
SLACK_OFF = (
    "Slack is off (no SLACK_* settings): serving the website chat API, /healthz and /metrics; "
    "staff work the ticket queue with `supportbot shell --staff NAME` or `supportbot mcp --staff ID`"
)


def base_app(host: Host) -> web.Application:
    """/healthz, /metrics and the website chat API: what every mode serves."""

    async def healthz(request: web.Request) -> web.Response:
        ok = await host.store.ping()
        return web.json_response({"ok": ok, "replica": host.owner}, status=200 if ok else 503)

    async def metrics_endpoint(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics.REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_endpoint)
    web_api.add_routes(app, host)  # the website chat widget's API, beside /slack/events
    return app


def web_app(rt: Runtime, slack: AsyncApp | None = None) -> web.Application:
    """The base app plus POST /slack/events."""
    slack = slack or build_app(rt)

    async def slack_events(request: web.Request) -> web.Response:
        try:
            async with asyncio.timeout(rt.settings.http_body_timeout_s):  # a stalled sender is cut off
                await request.read()  # kept by aiohttp for to_bolt_request
        except TimeoutError:
            return web.Response(status=408, text="request body timeout")
        bolt_request = await to_bolt_request(request)
        return await to_aiohttp_response(await slack.async_dispatch(bolt_request))

    app = base_app(rt.host)
    app.router.add_post("/slack/events", slack_events)
    return app


async def housekeeping(host: Host, rt: Runtime | None) -> None:
    rounds = 0
    while True:
        try:
            if rt is not None:
                await housekeeping_once(rt)
            else:
                await host_housekeeping(host)
            if rounds % PRUNE_EVERY == 0:
                await retention(host)
        except Exception:
            log.exception("housekeeping failed")
        rounds += 1
        await asyncio.sleep(HOUSEKEEPING_SECONDS)


async def host_housekeeping(host: Host) -> None:
    """What every replica does whatever faces it serves."""
    await customer.expire_lapsed(host.deps)
    depth, age = await host.queue.depth()
    metrics.INBOX_DEPTH.set(depth)
    metrics.INBOX_AGE.set(age)


async def retention(host: Host) -> dict[str, int]:
    """Finished queue rows past RETENTION_DAYS (and closed rate-limit windows), a bounded amount."""
    gone = await prune_all(host.store, now=host.clock.now(), retention_days=host.settings.retention_days)
    for table, n in gone.items():
        metrics.PRUNED.labels(table).inc(n)
    if any(gone.values()):
        log.info("retention: deleted %s", ", ".join(f"{n} {t}" for t, n in gone.items() if n))
    return gone


async def housekeeping_once(rt: Runtime) -> None:
    await rt.board.sweep()
    await rt.board.sla()
    await rt.out.deliver_loose()  # what acts on other replicas, the shell or MCP said to Slack threads
    await host_housekeeping(rt.host)


async def serve(host: Host, rt: Runtime | None, *, address: str, port: int, socket_mode: bool) -> None:
    """Run until SIGTERM or SIGINT: with `rt`, the Slack face (HTTP or Socket Mode) and its workers
    too; without it, the website chat API alone (Slack off)."""
    if rt is not None:
        await rt.identify()
    for result in await customer.finish_interrupted(host.deps):  # refunds a crash left `processing`
        log.info("recovered refund: %s", result.data.get("refund_id"))
    slack = build_app(rt) if rt is not None else None
    app = web_app(rt, slack) if rt is not None else base_app(host)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, address, port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1] if site._server and site._server.sockets else port  # type: ignore[union-attr]
    socket_handler = None
    if socket_mode and rt is not None and slack is not None:
        from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

        token = host.settings.slack_app_token.get_secret_value() if host.settings.slack_app_token else ""
        socket_handler = AsyncSocketModeHandler(slack, token)
        await socket_handler.connect_async()
    host.workers.start()  # every face's work: Slack's messages and clicks, the website's turns
    host.listener.start()  # PostgreSQL: woken at once by other replicas' work (polling stays the fallback)
    keeper = asyncio.create_task(housekeeping(host, rt), name="housekeeping")
    mode = "website chat API only" if rt is None else "socket mode" if socket_mode else "http"
    print(f"supportbot listening on http://{address}:{bound} ({mode}, replica {host.owner})", flush=True)
    if rt is None:
        print(f"supportbot: {SLACK_OFF}", flush=True)
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
        await host.listener.stop()
        await host.workers.stop()
        if rt is not None:
            await rt.drain()
        if socket_handler is not None:
            await socket_handler.close_async()
        await runner.cleanup()
        await host.close()
        sys.stdout.flush()
