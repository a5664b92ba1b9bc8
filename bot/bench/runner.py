"""`supportbot bench`: what a support team pays in latency, throughput, memory and tokens.

Starts the real app as `supportbot run --http` subprocesses (N replicas), a local Slack Web API
that enforces Slack's published rate limits (429 + Retry-After) and a local Messages API with a
configurable latency, whose answers come from the offline rules model (so conversations use
real tool calls through the real Claude adapter and SDK). Simulated customers arrive open-loop at
`--rate` per second, each in its own thread, spread over `--channels` channels: a refund with a
confirm click, a question, or an escalation. Everything goes over loopback.

Reports JSON (`--out`), a Markdown table, and with `bench plot` a PNG of latency against load.
The bot's own overhead is measured inside the server (turn time minus time awaiting the model
and Slack, exported on /metrics), not guessed from outside.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import random
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import text

from agent.model import ModelRequest
from agent.offline import OfflineModel
from bot.bench.fake_anthropic import FakeMessagesAPI
from bot.bench.fake_slack import BOT_USER, HOME_TEAM, FakeSlack
from storage.engine import Store, is_sqlite
from storage.importer import import_records, parse, seed
from storage.kb_import import seed_help_center
from storage.migrate import upgrade
from storage.models import Base, CustomerLink
from storage.settings import Settings
from storage.states import LIVE_REFUNDS, UNFINISHED_INBOX, InboxStatus, OutboxStatus, RefundStatus
from storage.types import SystemClock

SECRET = "bench-signing-secret"
CUSTOMER_TEAM = "T_BENCH_CUSTOMERS"
STAFF = "C_BENCH_STAFF"
KINDS = (("refund", 0.6), ("question", 0.3), ("escalation", 0.1))
QUESTIONS = ("what are your support hours?", "how long is your return window?", "how long does shipping take?")


@dataclass
class Params:
    threads: int = 10
    channels: int = 0  # 0: one channel per 10 conversations
    rate: float = 20.0
    model_latency: float = 0.0
    turns: int = 1  # extra question turns after each conversation's script
    duration: float | None = None
    database_url: str | None = None
    replicas: int = 1
    workers: int | None = None  # WORKER_CONCURRENCY of each replica (None: the app's default)
    seed: int = 7
    timeout: float = 600.0
    slack_limits: bool = True  # False: a fake Slack without rate limits and the pacer off (the bot's own capacity)
    channel_layout: str = ""  # "per-customer" or "shared:N" (N threads a channel); "" = --channels or shared:10
    kind: str | None = None  # every conversation of this kind (refund, question, escalation); None: the mix

    @property
    def n_channels(self) -> int:
        if self.channels:
            return self.channels
        return layout_channels(self.channel_layout or "shared:10", self.threads)


def layout_channels(layout: str, threads: int) -> int:
    """Channels for a layout: Slack Connect usually has one shared channel per customer company
    (`per-customer`); `shared:N` puts N customers' threads in each channel (10: the worst case)."""
    if layout == "per-customer":
        return max(1, threads)
    kind, _, n = layout.partition(":")
    if kind != "shared" or not n.isdigit() or int(n) < 1:
        raise ValueError(f"--channel-layout must be per-customer or shared:N (N ≥ 1), not {layout!r}")
    return max(1, -(-threads // int(n)))


@dataclass
class Conversation:
    n: int
    kind: str
    user: str
    channel: str
    root: str = ""
    turn_ms: list[float] = field(default_factory=list)
    ack_ms: list[float] = field(default_factory=list)
    click_ms: list[float] = field(default_factory=list)
    sent: list[tuple[str, float]] = field(default_factory=list)  # (thread, when) of each message
    messages: int = 0
    done: bool = False
    error: str | None = None


# --- the model: the offline rules answer through the real Messages API protocol --------------------------
def model_responder() -> Any:
    offline = OfflineModel()

    async def respond(body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
        system = body.get("system") or ""
        if isinstance(system, list):
            system = "".join(b.get("text", "") for b in system)
        request = ModelRequest(
            system=system,
            tools=body.get("tools") or [],
            messages=body.get("messages") or [],
            max_tokens=int(body.get("max_tokens") or 1024),
        )
        reply = await offline.complete(request)
        return reply.content, reply.stop_reason or "end_turn"

    return respond


# --- the data: one customer and one delivered order per conversation -------------------------------------
async def prepare_store(url: str, params: Params) -> None:
    store = Store.from_settings(Settings(_env_file=None), url=url)  # type: ignore[call-arg]
    try:
        await upgrade(store)
        async with store.write() as s:
            for table in reversed(Base.metadata.sorted_tables):
                await s.execute(table.delete())
        clock = SystemClock()
        await seed(store, clock)
        settings = Settings(_env_file=None)  # type: ignore[call-arg]
        await seed_help_center(
            store, clock, base_url=settings.help_center_url, return_window_days=settings.return_window_days
        )
        delivered = (clock.now().replace(microsecond=0)).isoformat()
        doc = {
            "customers": [
                {"id": f"CB-{i}", "name": f"Customer {i}", "email": f"c{i}@bench.example"}
                for i in range(params.threads)
            ],
            "orders": [
                {
                    "id": f"ORD-7{i:05d}",
                    "customer_id": f"CB-{i}",
                    "status": "delivered",
                    "total": "49.99",
                    "currency": "USD",
                    "placed_at": delivered,
                    "delivered_at": delivered,
                    "items": [{"sku": "KTL-9", "name": "Electric kettle", "quantity": 1, "unit_price": "49.99"}],
                }
                for i in range(params.threads)
            ],
        }
        await import_records(store, parse(json.loads(json.dumps(doc))))
        # returning customers: their Slack identity is already linked, as after a first conversation.
        # (A first-time customer costs one users.info call, and Slack allows about 100 a minute: a
        # flood of new customers is paced by that, which the tests cover; the benchmark measures the bot.)
        async with store.write() as s:
            s.add_all(
                CustomerLink(
                    channel="slack",
                    subject=f"{CUSTOMER_TEAM}:U_B{i}",
                    customer_id=f"CB-{i}",
                    linked_by="bench",
                    created_at=clock.now(),
                )
                for i in range(params.threads)
            )
    finally:
        await store.dispose()


# --- the app under test --------------------------------------------------------------------------------------
@dataclass
class Replica:
    proc: asyncio.subprocess.Process
    url: str
    log: list[str]
    admin_url: str = ""  # the operator listener: /metrics

    def peak_rss_mb(self) -> float:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return 0.0


async def start_replica(env: dict[str, str]) -> Replica:
    """`supportbot run --http` on 127.0.0.1 (any free port, and any free one for /metrics unless
    ADMIN_PORT says), once it says where it listens."""
    env = {"ADMIN_PORT": "0", **env}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        "--http",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    assert proc.stdout is not None
    log: list[str] = []
    async with asyncio.timeout(180):  # a hang guard: on a loaded 2-core machine a start took 30 s
        while True:
            line = (await proc.stdout.readline()).decode()
            if not line:
                raise RuntimeError("the app exited before listening:\n" + "".join(log[-20:]))
            log.append(line)
            if "listening on http://" in line:
                url = line.split("listening on ", 1)[1].split()[0]
            if "metrics on http://" in line:
                admin = line.split("metrics on ", 1)[1].split()[0].removesuffix("/metrics")
                break

    async def drain() -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            log.append(line.decode(errors="replace"))

    asyncio.get_running_loop().create_task(drain())  # noqa: RUF006 - ends with the process
    return Replica(proc, url, log, admin)


def replica_env(
    url: str, slack: FakeSlack, api: FakeMessagesAPI, *, workers: int | None, pace: bool = True, **extra: str
) -> dict[str, str]:
    """The environment of a replica: the fakes, the scratch store, nothing of ours from outside.
    `workers`: its WORKER_CONCURRENCY (None: the app's default)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC", "SLACK", "SUPPORT", "MODEL"))}
    env.pop("WORKER_CONCURRENCY", None)
    if workers is not None:
        extra = {"WORKER_CONCURRENCY": str(workers), **extra}
    return env | {
        "DATABASE_URL": url,
        "SLACK_BOT_TOKEN": "xoxb-bench",
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": slack.api_url,
        "SUPPORT_STAFF_CHANNEL": STAFF,
        "MODEL_PROVIDER": "claude",
        "ANTHROPIC_API_KEY": "bench",
        "ANTHROPIC_BASE_URL": api.url,
        "ANTHROPIC_TIMEOUT_S": "120",
        "LOG_LEVEL": "WARNING",
        "INBOX_POLL_SECONDS": "0.2",
        "DB_POOL_SIZE": "20",
        "DB_MAX_OVERFLOW": "20",
        "SLACK_PACE": "true" if pace else "false",
        "HTTP_CONNECTIONS_PER_ADDRESS": "0",  # every simulated client connects from 127.0.0.1
        **extra,
    }


def event_envelope(event: dict[str, Any], event_id: str) -> dict[str, Any]:
    """A customer's message event as Slack delivers it to the app in a Slack Connect channel."""
    return {
        "team_id": CUSTOMER_TEAM,
        "api_app_id": "A_BENCH",
        "type": "event_callback",
        "event": event,
        "event_id": event_id,
        "event_time": int(time.time()),
        "authorizations": [{"team_id": HOME_TEAM, "user_id": BOT_USER, "is_bot": True}],
        "is_ext_shared_channel": True,
    }


def signed(body: str) -> dict[str, str]:
    ts = str(int(time.time()))
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": SignatureVerifier(SECRET).generate_signature(timestamp=ts, body=body),
    }


# --- the customers --------------------------------------------------------------------------------------------
class Driver:
    def __init__(self, params: Params, slack: FakeSlack, replicas: list[Replica], http: aiohttp.ClientSession) -> None:
        self.params = params
        self.slack = slack
        self.replicas = replicas
        self.http = http
        self.ts = 0
        self.failed_deliveries = 0

    def next_ts(self) -> str:
        self.ts += 1
        return f"{1_750_000_000 + self.ts}.{self.ts:06d}"

    def replica(self) -> Replica:
        return random.choice(self.replicas)

    async def post(self, body: str, content_type: str) -> float:
        started = time.monotonic()
        async with self.http.post(
            f"{self.replica().url}/slack/events",
            data=body.encode(),
            headers={"Content-Type": content_type, **signed(body)},
        ) as resp:
            await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"POST /slack/events answered {resp.status}")
        return (time.monotonic() - started) * 1000

    async def say(self, conv: Conversation, text_: str) -> float:
        """Send a message in the conversation's thread; wait for the next reply; returns turn ms."""
        ts = self.next_ts()
        root = conv.root or ts
        event = {
            "type": "message",
            "user": conv.user,
            "team": CUSTOMER_TEAM,
            "user_team": CUSTOMER_TEAM,
            "channel": conv.channel,
            "ts": ts,
            "event_ts": ts,
            "text": text_,
            "channel_type": "channel",
        }
        if conv.root:
            event["thread_ts"] = conv.root
        envelope = event_envelope(event, f"EvB{ts.replace('.', '')}")
        before = len(self.slack.by_thread.get((conv.channel, root), []))
        sent = time.monotonic()
        conv.sent.append((root, sent))
        conv.ack_ms.append(await self.post(json.dumps(envelope), "application/json"))
        conv.root = root
        conv.messages += 1
        posts = await self.slack.wait_thread(
            conv.channel, root, lambda p: len(p) > before and p, limit=self.params.timeout
        )
        ms = (posts[before]["at"] - sent) * 1000
        conv.turn_ms.append(ms)
        return ms

    async def click_confirm(self, conv: Conversation) -> None:
        prompt = await self.slack.wait_thread(
            conv.channel, conv.root, lambda p: _with_button(p, "refund_confirm"), limit=self.params.timeout
        )
        value = next(
            e["value"]
            for b in prompt["blocks"]
            if b["type"] == "actions"
            for e in b["elements"]
            if e["action_id"] == "refund_confirm"
        )
        payload = {
            "type": "block_actions",
            "user": {"id": conv.user, "team_id": CUSTOMER_TEAM},
            "container": {"type": "message", "message_ts": prompt["ts"], "channel_id": conv.channel},
            "channel": {"id": conv.channel},
            "message": {"ts": prompt["ts"], "thread_ts": conv.root},
            "team": {"id": CUSTOMER_TEAM},
            "api_app_id": "A_BENCH",
            "trigger_id": "1.1",
            "response_url": self.slack.response_url(f"click-{conv.n}"),
            "actions": [{"action_id": "refund_confirm", "value": value, "type": "button", "block_id": "b"}],
        }
        before = len(self.slack.by_thread.get((conv.channel, conv.root), []))
        sent = time.monotonic()
        conv.ack_ms.append(
            await self.post("payload=" + urllib.parse.quote(json.dumps(payload)), "application/x-www-form-urlencoded")
        )
        posts = await self.slack.wait_thread(
            conv.channel, conv.root, lambda p: len(p) > before and p, limit=self.params.timeout
        )
        conv.click_ms.append((posts[before]["at"] - sent) * 1000)

    async def run(self, conv: Conversation) -> None:
        try:
            if conv.kind == "refund":
                await self.say(conv, f"Hi, my kettle from order ORD-7{conv.n:05d} arrived broken. I'd like a refund.")
                await self.click_confirm(conv)
            elif conv.kind == "question":
                await self.say(conv, random.choice(QUESTIONS))
            else:
                await self.say(conv, "This is unacceptable, I want to speak to a manager.")
            if conv.kind != "escalation":
                for _ in range(self.params.turns):
                    await self.say(conv, random.choice(QUESTIONS))
            conv.done = True
        except Exception as exc:  # recorded as a correctness failure, not a crash of the benchmark
            conv.error = f"{type(exc).__name__}: {exc}"[:300]


def _with_button(posts: list[dict[str, Any]], action: str) -> dict[str, Any] | None:
    for m in reversed(posts):
        for b in m.get("blocks") or []:
            if b.get("type") == "actions" and any(e.get("action_id") == action for e in b["elements"]):
                return m
    return None


async def warm_up(driver: Driver, params: Params) -> list[Conversation]:
    """One refund conversation per replica before anything is measured: first-use costs (statement
    compilation, imports, connections) are not a turn's. Checked for correctness with the rest."""
    replicas, warm = driver.replicas, []
    for i, replica in enumerate(replicas):
        driver.replicas = [replica]
        conv = Conversation(params.threads + i, "refund", f"U_B{params.threads + i}", f"C_BENCH_WARM{i}")
        await driver.run(conv)
        if not params.turns and conv.done:  # a help-center question warms its search too
            await driver.say(conv, QUESTIONS[0])
        warm.append(conv)
    driver.replicas = replicas
    return warm


# --- measuring ------------------------------------------------------------------------------------------------
def status_times(slack: FakeSlack, convs: list[Conversation]) -> list[float]:
    """For each message sent, the time until its thread's status line was set (ms)."""
    statuses: dict[tuple[str, str], list[float]] = {}
    for call in slack.calls:
        if call.method == "assistant.threads.setStatus" and call.args.get("status"):
            key = (str(call.args.get("channel_id")), str(call.args.get("thread_ts")))
            statuses.setdefault(key, []).append(call.at)
    out = []
    for conv in convs:
        for root, sent in conv.sent:
            later = [at for at in statuses.get((conv.channel, root), []) if at >= sent]
            if later:
                out.append((min(later) - sent) * 1000)
    return out


# USD per million tokens at Claude Sonnet 4.5's list prices: input, cache write, cache read, output
SONNET_45 = {"input_tokens": 3.0, "cache_creation_input_tokens": 3.75, "cache_read_input_tokens": 0.30}
SONNET_45_OUTPUT = 15.0


def _kind_of(words: str) -> str:
    return "question" if words in QUESTIONS else "escalation" if "unacceptable" in words else "refund"


def cost_per_turn(usage: list[dict[str, Any]], asked: list[str], turns: dict[str, int]) -> dict[str, float]:
    """What each kind of turn costs at Sonnet 4.5's prices, in USD (the warm-up left out)."""
    spent: dict[str, float] = {}
    for u, words in zip(usage, asked, strict=False):
        usd = sum(u.get(k, 0) * p for k, p in SONNET_45.items()) + u.get("output_tokens", 0) * SONNET_45_OUTPUT
        spent[_kind_of(words)] = spent.get(_kind_of(words), 0.0) + usd / 1_000_000
    return {k: round(spent.get(k, 0.0) / n, 5) for k, n in turns.items() if n}


def turns_by_kind(convs: list[Conversation], follow_ups: int) -> dict[str, int]:
    return {
        "refund": sum(c.kind == "refund" for c in convs),
        "question": sum((c.kind == "question") + follow_ups * (c.kind != "escalation") for c in convs),
        "escalation": sum(c.kind == "escalation" for c in convs),
    }


def calls_per_turn(convs: list[Conversation], asked: list[str], follow_ups: int) -> dict[str, float]:
    """Model calls per turn of each kind, from the customer words each call was made for."""
    kinds = {"refund": 0, "question": 0, "escalation": 0}
    for words in asked:
        kinds[_kind_of(words)] += 1
    turns = turns_by_kind(convs, follow_ups)
    out = {k: round(kinds[k] / turns[k], 2) for k in kinds if turns[k]}
    out["all"] = round(len(asked) / max(sum(turns.values()), 1), 2)
    return out


def floor_of(shape: dict[str, float], parts: dict[str, float]) -> float:
    """The CPU ms a work item of this shape costs in the required libraries alone: its ack, its
    model and Slack calls, its transactions and their statements, at the parts bench's prices."""
    selects = max(0.0, shape["statements"] - shape["read_tx"] - shape["write_tx"])
    return round(
        parts["slack_ack"]
        + shape["model_calls"] * parts["claude_call"]
        + shape["slack_calls"] * parts["slack_post"]
        + shape["read_tx"] * parts["read_tx_one_select"]
        + shape["write_tx"] * parts["write_tx_one_update"]
        + selects * parts["each_further_select"],
        2,
    )


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}
    ordered = sorted(values)

    def q(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 2)

    return {"p50": q(0.50), "p95": q(0.95), "p99": q(0.99), "max": round(ordered[-1], 2)}


def _buckets(texts: list[str], name: str) -> dict[float, float]:
    buckets: dict[float, float] = {}
    for body in texts:
        for family in text_string_to_metric_families(body):
            if family.name != name:
                continue
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    le = float(sample.labels["le"])
                    buckets[le] = buckets.get(le, 0.0) + sample.value
    return buckets


def histogram_quantiles(texts: list[str], name: str, *, since: list[str] | None = None) -> dict[str, float]:
    """Quantiles of a Prometheus histogram summed over replicas (linear within buckets), in ms;
    counting only what was observed after the `since` scrape (the warm-up is not measured)."""
    buckets, before = _buckets(texts, name), _buckets(since or [], name)
    buckets = {le: n - before.get(le, 0.0) for le, n in buckets.items()}
    if not buckets:
        return percentiles([])
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    out = {}
    for label, p in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("max", 1.0)):
        rank = p * total
        lower, prev = 0.0, 0.0
        value = bounds[-2] if len(bounds) > 1 else 0.0
        for le in bounds:
            if buckets[le] >= rank and total:
                if le == float("inf"):
                    value = lower
                else:
                    span = buckets[le] - prev
                    value = lower + (le - lower) * ((rank - prev) / span if span else 1.0)
                break
            lower, prev = le, buckets[le]
        out[label] = round(value * 1000, 2)
    return out


COUNTED = (
    ("cpu_s", "process_cpu_seconds_total", None),
    ("read_statements", "supportbot_db_statements_total", "read"),
    ("write_statements", "supportbot_db_statements_total", "write"),
    ("read_tx", "supportbot_db_transactions_total", "read"),
    ("write_tx", "supportbot_db_transactions_total", "write"),
    ("lock_wait_s", "supportbot_db_write_lock_wait_seconds_sum", None),
    ("lock_hold_s", "supportbot_db_write_lock_hold_seconds_sum", None),
    ("lock_waits", "supportbot_db_write_lock_wait_seconds_count", None),
)


def counter_totals(texts: list[str]) -> dict[str, float]:
    """The counters of COUNTED summed over replicas' /metrics."""
    out = dict.fromkeys((k for k, _, _ in COUNTED), 0.0)
    for body in texts:
        for family in text_string_to_metric_families(body):
            for sample in family.samples:
                for key, name, kind in COUNTED:
                    if sample.name == name and (kind is None or sample.labels.get("kind") == kind):
                        out[key] += sample.value
    return out


def per_turn(before: dict[str, float], after: dict[str, float], items: int) -> dict[str, float]:
    """What one work item (a message or a click) cost the replicas, from their own counters."""
    d = {k: after[k] - before[k] for k in after}
    n = max(items, 1)
    return {
        "cpu_ms": round(d["cpu_s"] * 1000 / n, 2),
        "statements": round((d["read_statements"] + d["write_statements"]) / n, 1),
        "write_tx": round(d["write_tx"] / n, 1),
        "read_tx": round(d["read_tx"] / n, 1),
        "lock_wait_ms": round(d["lock_wait_s"] * 1000 / n, 2),
        "lock_hold_ms": round(d["lock_hold_s"] * 1000 / n, 2),
    }


async def scrape(http: aiohttp.ClientSession, replicas: list[Replica]) -> list[str]:
    texts = []
    for r in replicas:
        async with http.get(f"{r.admin_url}/metrics") as resp:
            texts.append(await resp.text())
    return texts


async def _store_counts(url: str) -> dict[str, Any]:
    """What the store holds after the run: the queues by status, and the money."""
    store = Store.from_settings(Settings(_env_file=None), url=url)  # type: ignore[call-arg]
    live = ", ".join(f"'{s}'" for s in LIVE_REFUNDS)
    try:
        async with store.read() as s:
            inbox = dict((await s.execute(text("SELECT status, count(*) FROM inbox GROUP BY status"))).all())
            outbox = dict((await s.execute(text("SELECT status, count(*) FROM outbox GROUP BY status"))).all())
            dup = await s.scalar(
                text(
                    f"SELECT count(*) FROM (SELECT order_id FROM refunds WHERE status IN ({live}) "
                    "GROUP BY order_id HAVING count(*) > 1) d"
                )
            )
            processed = await s.scalar(
                text("SELECT count(*) FROM refunds WHERE status = :s"), {"s": str(RefundStatus.PROCESSED)}
            )
            payouts = await s.scalar(text("SELECT count(*) FROM payouts"))
    finally:
        await store.dispose()
    return {
        "inbox_done": int(inbox.get(InboxStatus.DONE, 0)),
        "inbox_dead": int(inbox.get(InboxStatus.DEAD, 0)),
        "inbox_unfinished": int(sum(inbox.get(s, 0) for s in UNFINISHED_INBOX)),
        "outbox_unposted": int(sum(v for k, v in outbox.items() if k != OutboxStatus.POSTED)),
        "duplicate_live_refunds": int(dup or 0),
        "refunds_processed": int(processed or 0),
        "payouts": int(payouts or 0),
    }


def _posting_order(slack: FakeSlack) -> tuple[int, int]:
    """(rows posted more than once, rows posted before an earlier row of their thread)."""
    seen: set[int] = set()
    duplicates = out_of_order = 0
    for posts in slack.by_thread.values():
        last = -1
        for m in posts:
            meta = (m.get("metadata") or {}).get("event_payload") or {}
            if "row" not in meta:
                continue
            duplicates += meta["row"] in seen  # each outgoing-log row posted once
            seen.add(meta["row"])
            out_of_order += meta["row"] < last
            last = meta["row"]
    return duplicates, out_of_order


def _log_errors(replicas: list[Replica]) -> tuple[list[str], list[str]]:
    """The replicas' ERROR lines and tracebacks, and the exceptions' first lines."""
    errors = [line.strip() for r in replicas for line in r.log if " ERROR " in line or "Traceback" in line]
    causes = [
        line.strip()[:300]
        for r in replicas
        for line in r.log
        if line and not line[0].isspace() and ("Error:" in line or "Exception:" in line)
    ]
    return errors, causes


async def correctness(
    url: str,
    slack: FakeSlack,
    convs: list[Conversation],
    replicas: list[Replica],
    *,
    warm: list[Conversation] | None = None,
) -> dict[str, Any]:
    """Everything the app was sent (the warm-up too) answered exactly once, in order, with money
    moved once per confirmed refund; `conversations` and `completed` count the measured ones."""
    stored = await _store_counts(url)
    duplicates, out_of_order = _posting_order(slack)
    errors, causes = _log_errors(replicas)
    warm = warm or []
    everyone = [*convs, *warm]
    sent = sum(c.messages for c in everyone)
    refunds_asked = sum(1 for c in everyone if c.kind == "refund" and c.done)
    counts = {
        "conversations": len(convs),
        "completed": sum(c.done for c in convs),
        "warm_up_completed": sum(c.done for c in warm) == len(warm),
        "messages_sent": sent,
        **stored,
        "duplicate_replies": duplicates,
        "out_of_order_replies": out_of_order,
        "refunds_confirmed_by_customers": refunds_asked,
        "log_errors": len(errors),
        "slack_429s": slack.limited,
    }
    ok = (
        counts["completed"] == counts["conversations"]
        and counts["warm_up_completed"]
        and counts["inbox_done"] == sent + refunds_asked  # every message, and every Confirm click
        and not counts["inbox_dead"]
        and not counts["inbox_unfinished"]
        and not counts["outbox_unposted"]
        and not duplicates
        and not out_of_order
        and not counts["duplicate_live_refunds"]
        and counts["refunds_processed"] == counts["payouts"] == refunds_asked
        and not errors
    )
    return {"ok": ok, **counts, "first_errors": errors[:3] + causes[:5] + [c.error for c in everyone if c.error][:5]}


# --- the run --------------------------------------------------------------------------------------------------
@dataclass
class _Run:
    """What one run measured, for the report."""

    convs: list[Conversation]
    wall: float
    scraped_before: list[str]
    metrics_texts: list[str]
    rss: list[float]
    check: dict[str, Any]
    usage: list[dict[str, Any]]  # the measured conversations' model calls (the warm-up's left out)
    asked: list[str]  # each of those calls' newest customer words
    status_ms: list[float]  # a message event to its thread's status line
    limited: int
    slack_calls: int  # Web API calls the measured conversations made


async def run_bench(params: Params) -> dict[str, Any]:
    random.seed(params.seed)
    with tempfile.TemporaryDirectory(prefix="supportbot-bench-") as tmp:
        url = params.database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        if params.replicas > 1 and is_sqlite(url):
            raise ValueError("--replicas > 1 needs PostgreSQL: pass --database-url postgresql+asyncpg://… (scratch)")
        await prepare_store(url, dataclasses.replace(params, threads=params.threads + params.replicas))
        slack = FakeSlack(staff_channel=STAFF, rate_limits=params.slack_limits)
        api = FakeMessagesAPI(model_responder(), latency=params.model_latency, record=False)
        await slack.start()
        await api.start()
        try:
            run = await _measure(params, url, slack, api)
        finally:
            await slack.close()
            await api.close()
    return _report(params, url, run)


async def _measure(params: Params, url: str, slack: FakeSlack, api: FakeMessagesAPI) -> _Run:
    """Start the replicas, warm them up, send the conversations open-loop, and check the outcome."""
    for i in range(params.threads + params.replicas):  # a warm-up customer per replica
        slack.add_user(f"U_B{i}", team=CUSTOMER_TEAM, email=f"c{i}@bench.example")
    slack.channel_members[STAFF] = ["U_BENCH_STAFF"]
    env = replica_env(url, slack, api, workers=params.workers, pace=params.slack_limits)
    replicas = [await start_replica(env) for _ in range(params.replicas)]
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as http:
            driver = Driver(params, slack, replicas, http)
            warm = await warm_up(driver, params)
            warm_calls, warm_slack = len(api.usage), len(slack.calls)
            scraped_before = await scrape(http, replicas)
            started = time.monotonic()
            convs = await _send_all(params, driver, started)
            wall = time.monotonic() - started
            metrics_texts = await scrape(http, replicas)
        rss = [r.peak_rss_mb() for r in replicas]
    finally:
        for r in replicas:
            if r.proc.returncode is None:
                r.proc.terminate()
        for r in replicas:
            await r.proc.wait()
    check = await correctness(url, slack, convs, replicas, warm=warm)
    usage, asked = api.usage[warm_calls:], api.asked[warm_calls:]
    status_ms = status_times(slack, convs)
    slack_calls = len(slack.calls) - warm_slack
    return _Run(
        convs, wall, scraped_before, metrics_texts, rss, check, usage, asked, status_ms, slack.limited, slack_calls
    )


async def _send_all(params: Params, driver: Driver, started: float) -> list[Conversation]:
    kinds = [k for k, _ in KINDS]
    weights = [w for _, w in KINDS]
    convs: list[Conversation] = []
    tasks = []
    for n in range(params.threads):
        if params.duration is not None and time.monotonic() - started > params.duration:
            break
        kind = params.kind or random.choices(kinds, weights)[0]
        conv = Conversation(n, kind, f"U_B{n}", f"C_BENCH_{n % params.n_channels:03d}")
        convs.append(conv)
        tasks.append(asyncio.create_task(driver.run(conv)))
        await asyncio.sleep(1 / params.rate if params.rate > 0 else 0)  # open-loop arrivals
    await asyncio.gather(*tasks)
    return convs


def _report(params: Params, url: str, run: _Run) -> dict[str, Any]:
    convs, texts, before = run.convs, run.metrics_texts, run.scraped_before
    turns = [ms for c in convs for ms in c.turn_ms]
    tokens = dict.fromkeys(("input", "cache_read", "cache_write", "output"), 0)
    for u in run.usage:
        tokens["input"] += u.get("input_tokens", 0)
        tokens["cache_read"] += u.get("cache_read_input_tokens", 0)
        tokens["cache_write"] += u.get("cache_creation_input_tokens", 0)
        tokens["output"] += u.get("output_tokens", 0)
    items = len(turns) + sum(len(c.click_ms) for c in convs)
    database = "sqlite" if is_sqlite(url) else "postgresql"
    return {
        "params": {**params.__dict__, "channels": params.n_channels, "database": database},
        "machine": {"cores": os.cpu_count()},
        "ack_ms": percentiles([ms for c in convs for ms in c.ack_ms]),
        "turn_ms": percentiles(turns),
        "first_turn_ms_by_kind": {  # a conversation's first message to its reply (a refund's: its Confirm step)
            kind: percentiles([c.turn_ms[0] for c in convs if c.kind == kind and c.turn_ms]) for kind, _ in KINDS
        },
        "click_ms": percentiles([ms for c in convs for ms in c.click_ms]),  # a Confirm click to its reply
        "event_to_status_ms": percentiles(run.status_ms),
        "model_calls_per_turn": calls_per_turn(convs, run.asked, params.turns),
        "usd_per_turn_sonnet45": cost_per_turn(run.usage, run.asked, turns_by_kind(convs, params.turns)),
        "overhead_ms": histogram_quantiles(texts, "supportbot_turn_overhead_seconds", since=before),
        "model_ms_per_turn": histogram_quantiles(texts, "supportbot_model_seconds", since=before),
        "slack_ms_per_turn": histogram_quantiles(texts, "supportbot_slack_seconds", since=before),
        "turns_per_s": round(len(turns) / run.wall, 2) if run.wall else 0.0,
        "per_turn": {
            **per_turn(counter_totals(before), counter_totals(texts), items),
            "model_calls": round(len(run.usage) / max(items, 1), 2),
            "slack_calls": round(run.slack_calls / max(items, 1), 2),
        },
        "wall_s": round(run.wall, 2),
        "peak_rss_mb": round(max(run.rss), 1) if run.rss else 0.0,
        "peak_rss_mb_per_replica": [round(r, 1) for r in run.rss],
        "slack_429s": run.limited,
        "model_calls": len(run.usage),
        "tokens": {k: round(v / max(len(convs), 1), 1) for k, v in tokens.items()},
        "tokens_total": tokens,
        "correctness": run.check,
    }


# --- reporting ------------------------------------------------------------------------------------------------
def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| conversations | model latency | replicas | db | ack p50/p99 ms | turn p50/p95/p99 ms | "
        "overhead p50/p99 ms | turns/s | peak RSS MB | 429s | tokens/conv in+cache/out | ok |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        p, a, t, o, k = r["params"], r["ack_ms"], r["turn_ms"], r["overhead_ms"], r["tokens"]
        tin = k["input"] + k["cache_read"] + k["cache_write"]
        lines.append(
            f"| {p['threads']} | {p['model_latency']} s | {p['replicas']} | {p['database']} | {a['p50']}/{a['p99']} | "
            f"{t['p50']}/{t['p95']}/{t['p99']} | {o['p50']}/{o['p99']} | {r['turns_per_s']} | {r['peak_rss_mb']} | "
            f"{r['slack_429s']} | {tin:.0f} ({k['cache_read']:.0f} cached)/{k['output']:.0f} | "
            f"{'yes' if r['correctness']['ok'] else 'NO'} |"
        )
    return "\n".join(lines)


def capacity_table(results: list[dict[str, Any]]) -> str:
    """What a turn costs the bot itself (a turn: a message or a click), from the replicas' counters."""
    lines = [
        "| conversations | channels | Slack limits | model latency | replicas | db | turns/s | CPU ms/turn | "
        "statements/turn | write+read tx/turn | lock wait/hold ms/turn | overhead p50/p99 ms | ok |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        p, o, c = r["params"], r["overhead_ms"], r.get("per_turn")
        if c is None:
            continue
        lines.append(
            f"| {p['threads']} | {p['channels']} | {'on' if p.get('slack_limits', True) else 'off'} | "
            f"{p['model_latency']} s | {p['replicas']} | {p['database']} | {r['turns_per_s']} | {c['cpu_ms']} | "
            f"{c['statements']} | {c['write_tx']}+{c['read_tx']} | {c['lock_wait_ms']}/{c['lock_hold_ms']} | "
            f"{o['p50']}/{o['p99']} | {'yes' if r['correctness']['ok'] else 'NO'} |"
        )
    return "\n".join(lines)


def compare(new: dict[str, Any], old: dict[str, Any]) -> str:
    rows = ["| metric | old | new | new/old |", "|---|---|---|---|"]
    for key in ("ack_ms", "turn_ms", "overhead_ms"):
        for q in ("p50", "p95", "p99"):
            a, b = old[key][q], new[key][q]
            rows.append(f"| {key} {q} | {a} | {b} | {b / a:.2f} |" if a else f"| {key} {q} | {a} | {b} | - |")
    for key in ("turns_per_s", "peak_rss_mb"):
        a, b = old[key], new[key]
        rows.append(f"| {key} | {a} | {b} | {b / a:.2f} |" if a else f"| {key} | {a} | {b} | - |")
    return "\n".join(rows)


def plot(results: list[dict[str, Any]], out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise RuntimeError("plotting needs matplotlib: pip install 'supportbot[bench]'") from exc
    series: dict[str, list[tuple[int, float, float]]] = {}
    for r in results:
        p = r["params"]
        label = f"{p['replicas']} x {p['database']}, model {p['model_latency']} s"
        series.setdefault(label, []).append((p["threads"], r["turn_ms"]["p50"], r["turn_ms"]["p95"]))
    fig, ax = plt.subplots(figsize=(8, 5))
    for label, pts in sorted(series.items()):
        pts.sort()
        xs = [x for x, _, _ in pts]
        line = ax.plot(xs, [p50 for _, p50, _ in pts], marker="o", label=f"{label} p50")[0]
        ax.plot(
            xs, [p95 for _, _, p95 in pts], marker="x", linestyle="--", color=line.get_color(), label=f"{label} p95"
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("concurrent conversations")
    ax.set_ylabel("turn latency, event in → reply accepted by Slack (ms)")
    ax.set_title(f"supportbot bench ({os.cpu_count()} cores, Slack rate limits enforced)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
