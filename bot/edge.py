"""The HTTP server's edge: what one client can hold of this process before any route runs.

aiohttp bounds a request's body only once a handler reads it (HTTP_BODY_TIMEOUT_S, in the
routes); a connection that sends one header line and stops would otherwise be held for as long as
aiohttp's keep-alive allows (an hour), and enough of them take every open file the process has,
so nothing, not even /healthz, is answered. So every connection the HTTP listeners accept is
wrapped here:

- its request head must be complete within HTTP_HEADER_TIMEOUT_S of the connection opening (and
  be at most MAX_HEAD_BYTES), else the connection is closed; between requests aiohttp's keep-alive
  (HTTP_KEEPALIVE_TIMEOUT_S) closes it, idle or half-sent;
- one client address holds at most HTTP_CONNECTIONS_PER_ADDRESS connections (only when clients
  connect directly: behind TRUSTED_PROXY_HOPS proxies every peer is a proxy, and limiting clients
  is the proxy's job, see docs/exposure.md);
- the process holds at most what its open-file limit leaves after a reserve for the store, log
  files and Slack: past that a new connection is closed at once instead of failing accept(), so
  the store keeps its files and asyncio never loops on "out of system resource".

What a flood makes the process log is bounded too (`throttle_logs`): asyncio's accept errors and
aiohttp's tracebacks for malformed requests (an over-long header is the client's fault, answered
400) become one line per LOG_EVERY_S with a count.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

log = logging.getLogger(__name__)
MAX_HEAD_BYTES = 64 * 1024
LOG_EVERY_S = 10.0
RESERVED_FILES = 64  # kept for the store's connections, log files and Slack's, whatever clients do


def connection_budget(reserve: int = RESERVED_FILES) -> int:
    """Connections the open-file limit leaves for clients (at least a handful)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1_000_000
    return max(soft - max(reserve, soft // 8), 8)


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    header_timeout_s: float
    per_address: int  # 0: no cap per address
    total: int


class Edge:
    """Open connections by client address, and the protocol wrapper that enforces the limits."""

    def __init__(self, limits: EdgeLimits) -> None:
        self.limits = limits
        self.by_address: Counter[str] = Counter()
        self.open = 0
        self.refused = Throttle("refused %s connection(s) over the per-address or open-file limit")
        self.slow = Throttle("closed %s connection(s) whose request head did not arrive in time or was too big")

    def factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: Guarded(self, inner())

    def admit(self, address: str) -> bool:
        per_address = self.limits.per_address
        if self.open >= self.limits.total or (per_address and self.by_address[address] >= per_address):
            self.refused.note(log, logging.WARNING)
            return False
        self.open += 1
        self.by_address[address] += 1
        return True

    def release(self, address: str) -> None:
        self.open -= 1
        self.by_address[address] -= 1
        if self.by_address[address] <= 0:
            del self.by_address[address]


class Guarded(asyncio.Protocol):
    """aiohttp's request handler behind the edge's limits (every call passed through)."""

    def __init__(self, edge: Edge, inner: asyncio.Protocol) -> None:
        self.edge = edge
        self.inner: asyncio.Protocol | None = inner
        self.transport: asyncio.BaseTransport | None = None
        self.address = ""
        self.timer: asyncio.TimerHandle | None = None
        self.tail = b""  # the last bytes of the head so far, to see its end across packets
        self.head_bytes = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if not self.edge.admit(self.address):
            self.inner = None
            transport.abort()  # at once: the file goes back now, not after a FIN handshake
            return
        self.transport = transport
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(self.edge.limits.header_timeout_s, self._cut)
        assert self.inner is not None
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.inner is None:
            return
        if self.timer is not None:
            self._watch_head(data)
        self.inner.data_received(data)

    def _watch_head(self, data: bytes) -> None:
        self.head_bytes += len(data)
        seen = self.tail + data
        if b"\r\n\r\n" in seen or b"\n\n" in seen:
            self._head_done()
        elif self.head_bytes > MAX_HEAD_BYTES:
            self._cut()
        else:
            self.tail = seen[-3:]

    def _head_done(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.tail = b""

    def _cut(self) -> None:
        """The head took too long (or grew too big): the connection goes, its file with it."""
        self._head_done()
        if self.transport is not None and not self.transport.is_closing():
            self.edge.slow.note(log, logging.INFO)
            self.transport.abort()

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.inner is None:
            return
        self._head_done()
        self.edge.release(self.address)
        inner, self.inner = self.inner, None
        inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()


class EdgeSite(web.BaseSite):
    """A TCP site whose connections go through an `Edge`."""

    __slots__ = ("edge", "host", "port", "bound", "runner")

    def __init__(self, runner: web.BaseRunner, host: str, port: int, edge: Edge, *, backlog: int = 512) -> None:
        super().__init__(runner, backlog=backlog)
        self.runner, self.edge, self.host, self.port, self.bound = runner, edge, host, port, port

    @property
    def name(self) -> str:
        return f"http://{self.host}:{self.bound}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self.edge.factory(server), self.host, self.port, backlog=self._backlog, reuse_address=True
        )
        if self._server.sockets:
            self.bound = self._server.sockets[0].getsockname()[1]


# --- logs a flood cannot fill -------------------------------------------------------------------------------
class Throttle:
    """At most one line per LOG_EVERY_S for a kind of event, saying how many there were."""

    def __init__(self, what: str, every_s: float = LOG_EVERY_S) -> None:
        self.what, self.every_s = what, every_s
        self.last = -float("inf")
        self.count = 0

    def due(self) -> int:
        """Count one; the number to report now, or 0 while the interval lasts."""
        self.count += 1
        now = time.monotonic()
        if now - self.last < self.every_s:
            return 0
        n, self.count, self.last = self.count, 0, now
        return n

    def note(self, logger: logging.Logger, level: int) -> None:
        n = self.due()
        if n:
            logger.log(level, self.what, n)


class ThrottledRecords(logging.Filter):
    """Passes one record of a kind per interval, without its traceback, naming how many it stands
    for; other records pass untouched."""

    def __init__(self, kind: Callable[[logging.LogRecord], str | None], level: int) -> None:
        super().__init__()
        self.kind, self.level = kind, level
        self.throttles: dict[str, Throttle] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        what = self.kind(record)
        if what is None:
            return True
        n = self.throttles.setdefault(what, Throttle(what)).due()
        if not n:
            return False
        record.msg, record.args = "%s (%d since the last such line)", (what, n)
        record.exc_info = record.exc_text = record.stack_info = None
        record.levelno, record.levelname = self.level, logging.getLevelName(self.level)
        return True


def _accept_error(record: logging.LogRecord) -> str | None:
    message = str(record.msg)
    return "socket.accept() out of system resource" if message.startswith("socket.accept() out of system") else None


def _bad_request(record: logging.LogRecord) -> str | None:
    exc = record.exc_info[1] if record.exc_info else None
    if str(record.msg).startswith("Error handling request") and isinstance(exc, HttpProcessingError):
        return f"malformed HTTP request answered {exc.code} ({type(exc).__name__})"
    return None


FILTERS: list[tuple[str, ThrottledRecords]] = [
    ("asyncio", ThrottledRecords(_accept_error, logging.ERROR)),
    ("aiohttp.server", ThrottledRecords(_bad_request, logging.WARNING)),
]


def throttle_logs() -> None:
    """Install the filters on asyncio's and aiohttp's loggers (once, whatever the calls)."""
    for name, records in FILTERS:
        logger = logging.getLogger(name)
        if records not in logger.filters:
            logger.addFilter(records)
