"""Serving: HTTP (`POST /slack/events`, `GET /healthz`, the website chat API) or Socket Mode, with
`GET /metrics` (and /healthz) on an operator listener of its own (ADMIN_HOST, ADMIN_PORT), every
connection through the edge's limits (`bot.edge`), plus the workers of the one queue and a
housekeeping loop (staff board, SLA re-announcements, messages written by acts elsewhere,
expired confirmations, queue gauges, retention). With no Slack settings at all the website chat
API is served alone, with Slack off.

Several replicas may run this against one PostgreSQL behind a load balancer in HTTP mode: all
coordination goes through the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp

from bot.edge import Edge, EdgeLimits, EdgeSite, connection_budget, throttle_logs
from bot.host import Host
from bot.slack.app import build_app
from bot.slack.runtime import Runtime
from bot.web import api as web_api
from desk import customer
from storage import metrics
from storage.health import healthy
from storage.retention import prune_all
from storage.settings import Settings

log = logging.getLogger(__name__)
HOUSEKEEPING_SECONDS = 5.0
PRUNE_EVERY = 12  # housekeeping rounds between retention passes (about a minute)
MAX_BODY = 1024 * 1024
HEALTH_CHECK_EVERY_S = 1.0
SLACK_OFF = (
    "Slack is off (no SLACK_* settings): serving the website chat API and /healthz; "
    "staff work the ticket queue with `supportbot shell --staff NAME` or `supportbot mcp --staff ID`"
)


class Health:
    """/healthz: the store answers a read and takes a write (`storage.health`), checked at most once
    every HEALTH_CHECK_EVERY_S however often it is asked, so a public URL cannot buy a write a request;
    callers that arrive while a check runs share its answer."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.lock = asyncio.Lock()
        self.checked_at: datetime | None = None
        self.last = False

    async def ok(self) -> bool:
        async with self.lock:
            now = self.host.clock.now()
            if self.checked_at is None or (now - self.checked_at).total_seconds() >= HEALTH_CHECK_EVERY_S:
                self.last = await healthy(self.host.store, replica=self.host.owner, now=now)
                self.checked_at = now
            return self.last


def _healthz(host: Host) -> Callable[[web.Request], Awaitable[web.Response]]:
    health = Health(host)

    async def healthz(request: web.Request) -> web.Response:
        ok = await health.ok()
        return web.json_response({"ok": ok, "replica": host.owner}, status=200 if ok else 503)

    return healthz


def base_app(host: Host) -> web.Application:
    """/healthz and the website chat API: what every mode serves on the public port."""
    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_get("/healthz", _healthz(host))
    web_api.add_routes(app, host)  # the website chat widget's API, beside /slack/events
    return app


def admin_app(host: Host) -> web.Application:
    """The operator listener: /metrics (what the shop's counters say is for its operators only) and
    /healthz, for a load balancer that checks there."""

    async def metrics_endpoint(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics.REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application(client_max_size=1024)
    app.router.add_get("/metrics", metrics_endpoint)
    app.router.add_get("/healthz", _healthz(host))
    return app


def runner_options(*, keepalive_s: float) -> dict[str, object]:
    """How every server of ours runs its handlers: a handler whose client hung up is cancelled at
    once (an event stream frees its place, nothing waits on a reader who is gone); work already
    stored goes on in the workers."""
    return {"handle_signals": False, "access_log": None, "keepalive_timeout": keepalive_s, "handler_cancellation": True}


async def listen(app: web.Application, edge: Edge, *, address: str, port: int, keepalive_s: float) -> EdgeSite:
    """Serve `app` on address:port through the edge's limits; the site knows the port it got."""
    runner = web.AppRunner(app, **runner_options(keepalive_s=keepalive_s))
    await runner.setup()
    site = EdgeSite(runner, address, port, edge)
    await site.start()
    return site


def edge_for(settings: Settings) -> Edge:
    per_address = settings.http_connections_per_address if settings.trusted_proxy_hops == 0 else 0
    return Edge(EdgeLimits(settings.http_header_timeout_s, per_address, connection_budget()))


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
    throttle_logs()
    edge, keepalive_s = edge_for(host.settings), host.settings.http_keepalive_timeout_s
    app = web_app(rt, slack) if rt is not None else base_app(host)
    site = await listen(app, edge, address=address, port=port, keepalive_s=keepalive_s)
    admin = await listen(
        admin_app(host), edge, address=host.settings.admin_host, port=host.settings.admin_port, keepalive_s=keepalive_s
    )
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
    print(f"supportbot listening on {site.name} ({mode}, replica {host.owner})", flush=True)
    print(f"supportbot metrics on {admin.name}/metrics (ADMIN_HOST, ADMIN_PORT)", flush=True)
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
        for runner in (site.runner, admin.runner):
            await runner.cleanup()
        await host.close()
        sys.stdout.flush()
