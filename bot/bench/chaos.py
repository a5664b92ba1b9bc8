"""`supportbot soak`: a few hundred conversations through real replicas while faults are
injected, then a check that nothing was lost, doubled or reordered (`bot.bench.invariants`).

The pieces are the benchmark's (`bot.bench.runner`): replicas as `supportbot run --http`
subprocesses, the fake Slack with Slack's rate limits, the fake Messages API answering with the
offline rules model, simulated customers (a refund with a Confirm click, a question, an
escalation). On top, a fault plan drawn from the seed, spread over the run:

- `kill`: SIGKILL a replica at a random moment, start a new one a few seconds later;
- `outage`: PostgreSQL stopped (`pg_ctl stop -m fast`, or `immediate` as in a crash) and started
  again; on SQLite, another connection holds the write lock (`BEGIN EXCLUSIVE`) for longer than
  the busy timeout;
- `slack_429` / `slack_500`: the fake Slack answers chat.postMessage with 429 and a long
  Retry-After, or 500, for a burst of calls;
- `combo`: a 429 with a long Retry-After on a customer reply, and while that reply waits, a store
  outage longer than the inbox lease (issue 15, item 1: the lease is lost mid-delivery).

The simulated Slack retries an event delivery that failed (no 200 within 3 s) the way Slack does,
with `X-Slack-Retry-Num`, only sooner and more often, so that a message is never lost for want of
a retry; a customer whose click got no answer clicks again. After the last conversation the run
waits for the replicas to drain, stops them, and checks. Output: JSON and a short table.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import random
import sqlite3
import tempfile
import time
import urllib.parse
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bot.bench.fake_anthropic import FakeMessagesAPI
from bot.bench.fake_slack import FakeSlack, Fault, is_reply
from bot.bench.invariants import check_invariants
from bot.bench.postgres import Postgres
from bot.bench.runner import (
    CUSTOMER_TEAM,
    KINDS,
    QUESTIONS,
    STAFF,
    Conversation,
    Driver,
    Params,
    Replica,
    _with_button,
    model_responder,
    prepare_store,
    replica_env,
    signed,
    start_replica,
)
from storage.engine import Store, is_sqlite
from storage.settings import Settings

FAULT_KINDS = ("kill", "outage", "slack_429", "slack_500", "combo")
BUSY_TIMEOUT_MS = 1000  # the replicas' SQLITE_BUSY_TIMEOUT_MS (the default); lock holds outlast it


@dataclass
class SoakParams:
    conversations: int = 300
    rate: float = 3.0  # new conversations per second
    seed: int = 15
    database_url: str | None = None  # scratch PostgreSQL (EVERYTHING IN IT IS DELETED); default temp SQLite
    postgres: bool = False  # start a throwaway PostgreSQL for the run (it is stopped and started)
    pg_data: str | None = None  # with database_url: that server's data directory, to stop and start it
    replicas: int = 0  # 0: two on PostgreSQL, one on SQLite
    kills: int = 3
    outages: int = 3
    slack_429: int = 3
    slack_500: int = 3
    combos: int = 1
    retry_after_s: int = 30  # the "long" Retry-After of injected 429s
    lease_s: float = 4.0  # INBOX_LEASE_SECONDS of the replicas: short, so takeovers happen in the run
    drain_s: float = 120.0
    turns: int = 1

    def count(self, kind: str) -> int:
        return {"kill": self.kills, "outage": self.outages, "slack_429": self.slack_429, "slack_500": self.slack_500,
                "combo": self.combos}[kind]  # fmt: skip


@dataclass(frozen=True, slots=True)
class PlannedFault:
    at_s: float
    kind: str
    down_s: float = 0.0  # how long a replica, the store or the lock stays down
    times: int = 1  # calls a Slack fault hits
    target: int = 0  # which replica
    mode: str = "fast"  # pg_ctl stop mode


def plan(params: SoakParams, replicas: int) -> list[PlannedFault]:
    """The faults of a run, from its seed alone: in a shuffled order, one in each equal slice of
    the arrivals, at a random moment in the first half of its slice."""
    rng = random.Random(params.seed)
    kinds = [kind for kind in FAULT_KINDS for _ in range(params.count(kind))]
    rng.shuffle(kinds)
    span = max(params.conversations / params.rate, 10.0)
    out = []
    for i, kind in enumerate(kinds):
        at = span * (i + rng.uniform(0.1, 0.5)) / len(kinds)
        if kind == "kill":
            out.append(PlannedFault(at, kind, down_s=rng.uniform(1, 4), target=rng.randrange(replicas)))
        elif kind == "outage":
            mode = rng.choice(["fast", "immediate"])
            out.append(PlannedFault(at, kind, down_s=rng.uniform(2, 3 * params.lease_s), mode=mode))
        elif kind == "combo":
            out.append(PlannedFault(at, kind, down_s=2.5 * params.lease_s))
        else:
            out.append(PlannedFault(at, kind, times=rng.randint(1, 2)))
    return out


# --- injecting ------------------------------------------------------------------------------------------
@dataclass
class Chaos:
    params: SoakParams
    slack: FakeSlack
    replicas: list[Replica]
    env: dict[str, str]
    url: str
    pg: Postgres | None
    done: list[dict[str, Any]] = field(default_factory=list)
    restarts: int = 0
    retired: list[Replica] = field(default_factory=list)  # killed ones, for their logs

    async def run(self, faults: list[PlannedFault], started: float) -> None:
        """Inject the faults in turn; each waits for its moment, and for the store and the replicas
        to settle after the one before (the backlog of an outage drains for two leases)."""
        settled = started
        for fault in faults:
            moment = max(started + fault.at_s, settled)
            await asyncio.sleep(max(0.0, moment - time.monotonic()))  # the plan's clock
            began = time.monotonic() - started
            try:
                await self.inject(fault)
            except Exception as exc:  # a fault that could not be injected is reported, not fatal
                self.done.append({**asdict(fault), "at_s": round(began, 1), "error": f"{type(exc).__name__}: {exc}"})
                settled = time.monotonic()
                continue
            self.done.append({**asdict(fault), "at_s": round(began, 1)})
            settled = time.monotonic() + (2 * self.params.lease_s if fault.kind in ("kill", "outage", "combo") else 0)

    async def inject(self, fault: PlannedFault) -> None:
        if fault.kind == "kill":
            await self.kill(fault.target % len(self.replicas), fault.down_s)
        elif fault.kind == "outage":
            await self.outage(fault.down_s, fault.mode)
        elif fault.kind in ("slack_429", "slack_500"):
            status = 429 if fault.kind == "slack_429" else 500
            self.slack.inject(Fault("chat.postMessage", status, self.params.retry_after_s, times=fault.times))
        elif fault.kind == "combo":
            waiting = self.slack.inject(Fault("chat.postMessage", 429, self.params.retry_after_s, where=is_reply))
            await self.slack.wait_for(lambda: waiting.spent, limit=120)
            await self.outage(fault.down_s, "fast")

    async def kill(self, index: int, down_s: float) -> None:
        old = self.replicas[index]
        if old.proc.returncode is None:
            old.proc.kill()
        await old.proc.wait()
        self.retired.append(old)
        await asyncio.sleep(down_s)  # the replica stays down this long
        self.replicas[index] = await start_replica(self.env)
        self.restarts += 1

    async def outage(self, down_s: float, mode: str) -> None:
        if self.pg is not None:
            await self.pg.stop(mode)
            try:
                await asyncio.sleep(down_s)  # the server stays down this long
            finally:
                await self.pg.start()
            return
        path = make_url(self.url).database or ""
        conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            await asyncio.to_thread(conn.execute, "BEGIN EXCLUSIVE")
            await asyncio.sleep(max(down_s, 2 * BUSY_TIMEOUT_MS / 1000))  # the lock is held this long
            await asyncio.to_thread(conn.execute, "ROLLBACK")
        finally:
            conn.close()


# --- the customers -------------------------------------------------------------------------------------------
class ChaosDriver(Driver):
    """The benchmark's customers, with Slack's retries of failed deliveries and repeated clicks."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[tuple[str, str]] = []
        self.event_retries = 0
        self.undelivered = 0
        self.started = time.monotonic()
        self.timeline: dict[int, list[str]] = {}  # what each conversation sent and when, for a stalled one
        self.without_button = 0  # refund answers whose first post had no Confirm button
        self.typed_yes = 0  # ... and no button came later either: the customer typed "yes"

    async def run(self, conv: Conversation) -> None:
        try:
            if conv.kind == "refund":
                await self.refund(conv)
            elif conv.kind == "question":
                await self.say(conv, random.choice(QUESTIONS))
            else:
                await self.say(conv, "This is unacceptable, I want to speak to a manager.")
            if conv.kind != "escalation":
                for _ in range(self.params.turns):
                    await self.say(conv, random.choice(QUESTIONS))
            conv.done = True
        except Exception as exc:  # recorded as a failure of the run, not a crash of the soak
            conv.error = f"{type(exc).__name__}: {exc}"[:300]

    async def refund(self, conv: Conversation) -> None:
        """Ask for a refund and press Confirm; when the reply came without the button (a turn run
        again after a crash finds the refund its first run prepared, and only reports it), the
        customer answers "yes" in the thread instead."""
        await self.say(conv, f"Hi, my kettle from order ORD-7{conv.n:05d} arrived broken. I'd like a refund.")
        if _with_button(self.slack.by_thread[(conv.channel, conv.root)], "refund_confirm") is None:
            self.without_button += 1  # the answer came without the button (it rides on the last reply)
        wait = self.params.timeout / 4  # past the longest Retry-After the soak injects
        try:
            await self.slack.wait_thread(conv.channel, conv.root, lambda p: _with_button(p, "refund_confirm"), wait)
        except TimeoutError:
            self.typed_yes += 1
            await self.say(conv, "yes")
            return
        await self.click_confirm(conv)

    def replica(self) -> Replica:
        alive = [r for r in self.replicas if r.proc.returncode is None]
        return random.choice(alive or self.replicas)

    async def post(self, body: str, content_type: str) -> float:
        started, reason = time.monotonic(), ""
        for attempt in range(30):
            headers = {"Content-Type": content_type, **signed(body)}
            if attempt:
                headers |= {"X-Slack-Retry-Num": str(attempt), "X-Slack-Retry-Reason": reason}
            try:
                async with self.http.post(
                    f"{self.replica().url}/slack/events",
                    data=body.encode(),
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=3),  # Slack's wait for the acknowledgement
                ) as resp:
                    await resp.read()
                    if resp.status == 200:
                        return (time.monotonic() - started) * 1000
                    reason = "http_error"
            except (aiohttp.ClientError, TimeoutError):
                reason = "http_timeout"
            self.event_retries += 1
            await asyncio.sleep(min(0.5 * 1.5**attempt, 5.0))  # Slack's retry, sooner than Slack's
        self.undelivered += 1
        raise RuntimeError("the event was never acknowledged")

    async def say(self, conv: Conversation, text_: str) -> float:
        self.sent.append((conv.channel, f"{1_750_000_000 + self.ts + 1}.{self.ts + 1:06d}"))  # the ts next_ts() gives
        at = time.monotonic() - self.started
        self.timeline.setdefault(conv.n, []).append(f"{at:.1f}s sent {text_[:20]!r} as {self.sent[-1][1]}")
        try:
            return await super().say(conv, text_)
        except TimeoutError:
            raise TimeoutError(f"no reply to message {conv.messages} ({text_[:40]!r}) in {conv.channel}") from None

    async def click_confirm(self, conv: Conversation) -> None:
        """Confirm; with no answer (a thread post, the buttons replaced, or "already handled") within
        a minute, click again, as a customer would."""
        try:
            prompt = await self.slack.wait_thread(
                conv.channel, conv.root, lambda p: _with_button(p, "refund_confirm"), limit=self.params.timeout
            )
        except TimeoutError:
            raise TimeoutError(f"no Confirm button in thread {conv.channel}/{conv.root}") from None
        value = next(
            e["value"]
            for b in prompt["blocks"]
            if b["type"] == "actions"
            for e in b["elements"]
            if e["action_id"] == "refund_confirm"
        )
        for attempt in range(5):
            key = f"click-{conv.n}-{attempt}"
            answered = functools.partial(
                self._answered,
                conv,
                key,
                len(self.slack.by_thread.get((conv.channel, conv.root), [])),
                len(self.slack.calls),
            )
            sent = time.monotonic()
            body = "payload=" + urllib.parse.quote(json.dumps(self._click(conv, prompt["ts"], value, key)))
            conv.ack_ms.append(await self.post(body, "application/x-www-form-urlencoded"))
            with contextlib.suppress(TimeoutError):
                await self.slack.wait_for(answered, limit=60)
                conv.click_ms.append((time.monotonic() - sent) * 1000)
                return
        raise TimeoutError("the Confirm click was never answered")

    def _answered(self, conv: Conversation, key: str, posts_before: int, calls_before: int) -> bool:
        return (
            len(self.slack.by_thread.get((conv.channel, conv.root), [])) > posts_before
            or any(r["key"] == key for r in self.slack.responses)
            or any(c.method == "chat.postEphemeral" for c in self.slack.calls[calls_before:])
        )

    def _click(self, conv: Conversation, message_ts: str, value: str, key: str) -> dict[str, Any]:
        return {
            "type": "block_actions",
            "user": {"id": conv.user, "team_id": CUSTOMER_TEAM},
            "container": {"type": "message", "message_ts": message_ts, "channel_id": conv.channel},
            "channel": {"id": conv.channel},
            "message": {"ts": message_ts, "thread_ts": conv.root},
            "team": {"id": CUSTOMER_TEAM},
            "api_app_id": "A_BENCH",
            "trigger_id": "1.1",
            "response_url": self.slack.response_url(key),
            "actions": [{"action_id": "refund_confirm", "value": value, "type": "button", "block_id": "b"}],
        }


# --- the run -----------------------------------------------------------------------------------------------------
async def drain(store: Store, limit_s: float) -> float:
    """Until the inbox has nothing unfinished and every reply and ticket is posted (or limit_s)."""
    started = time.monotonic()
    query = text(
        "SELECT (SELECT count(*) FROM inbox WHERE status IN ('pending','working'))"
        " + (SELECT count(*) FROM outbox WHERE status <> 'posted')"
        " + (SELECT count(*) FROM tickets WHERE slack_ts IS NULL OR slack_ts = 'posting')"
    )
    while time.monotonic() - started < limit_s:
        with contextlib.suppress(Exception):  # the store may still be coming back
            async with store.read() as s:
                if not (await s.execute(query)).scalar_one():
                    break
        await asyncio.sleep(1.0)  # polling the replicas' progress from outside
    return time.monotonic() - started


async def converse(driver: ChaosDriver, params: SoakParams) -> list[Conversation]:
    rng = random.Random(params.seed)  # the mix of conversations depends on the seed alone
    kinds, weights = [k for k, _ in KINDS], [w for _, w in KINDS]
    channels = max(1, params.conversations // 10)  # ten conversations share a channel, as in the benchmark
    convs, tasks = [], []
    for n in range(params.conversations):
        conv = Conversation(n, rng.choices(kinds, weights)[0], f"U_B{n}", f"C_BENCH_{n % channels:03d}")
        convs.append(conv)
        tasks.append(asyncio.create_task(driver.run(conv)))
        await asyncio.sleep(1 / params.rate)  # open-loop arrivals
    await asyncio.gather(*tasks)
    return convs


async def run_soak(params: SoakParams) -> dict[str, Any]:
    random.seed(params.seed)
    pg = await Postgres.throwaway() if params.postgres else None
    if params.pg_data and not params.postgres:
        pg = Postgres.existing(Path(params.pg_data))
    try:
        with tempfile.TemporaryDirectory(prefix="supportbot-soak-") as tmp:
            url = (
                pg.url if params.postgres and pg else params.database_url
            ) or f"sqlite+aiosqlite:///{Path(tmp) / 'soak.db'}"
            if not is_sqlite(url) and pg is None:
                raise ValueError(
                    "a soak on PostgreSQL stops the server: pass --postgres, or --pg-data with --database-url"
                )
            return await _soak(params, url, pg)
    finally:
        if pg is not None:
            await pg.close()


async def _soak(params: SoakParams, url: str, pg: Postgres | None) -> dict[str, Any]:
    n_replicas = params.replicas or (1 if is_sqlite(url) else 2)
    bench = Params(threads=params.conversations, turns=params.turns, timeout=180.0, seed=params.seed)
    await prepare_store(url, bench)
    slack = FakeSlack(staff_channel=STAFF, rate_limits=True)
    api = FakeMessagesAPI(model_responder(), record=False)
    await slack.start()
    await api.start()
    for i in range(params.conversations):
        slack.add_user(f"U_B{i}", team=CUSTOMER_TEAM, email=f"c{i}@bench.example")
    slack.channel_members[STAFF] = ["U_BENCH_STAFF"]
    env = replica_env(
        url, slack, api, workers=16, INBOX_LEASE_SECONDS=str(params.lease_s), INBOX_MAX_ATTEMPTS="10",
        SQLITE_BUSY_TIMEOUT_MS=str(BUSY_TIMEOUT_MS),
    )  # fmt: skip
    replicas = [await start_replica(env) for _ in range(n_replicas)]
    chaos = Chaos(params, slack, replicas, env, url, pg)
    store = Store.from_settings(Settings(_env_file=None), url=url)  # type: ignore[call-arg]
    started = time.monotonic()
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as http:
            driver = ChaosDriver(bench, slack, replicas, http)
            faults = asyncio.create_task(chaos.run(plan(params, n_replicas), started))
            convs = await converse(driver, params)
            await faults
            drained = await drain(store, params.drain_s)
        wall = time.monotonic() - started
        for r in replicas:
            if r.proc.returncode is None:
                r.proc.terminate()
        for r in replicas:
            await r.proc.wait()
        settings = Settings(_env_file=None)  # type: ignore[call-arg]
        check = await check_invariants(
            store, slack, sent=driver.sent, staff_channel=STAFF,
            window_days=settings.return_window_days, limit_cents=settings.refund_limit_cents,
        )  # fmt: skip
    finally:
        for r in replicas:
            if r.proc.returncode is None:
                r.proc.kill()
        await store.dispose()
        await slack.close()
        await api.close()
    return _soak_report(params, url, n_replicas, chaos, slack, driver, convs, wall, drained, check)


def _soak_report(
    params: SoakParams,
    url: str,
    n_replicas: int,
    chaos: Chaos,
    slack: FakeSlack,
    driver: ChaosDriver,
    convs: list[Conversation],
    wall: float,
    drained: float,
    check: dict[str, Any],
) -> dict[str, Any]:
    return {
        "params": {**asdict(params), "database": "sqlite" if is_sqlite(url) else "postgresql", "replicas": n_replicas},
        "faults": chaos.done,
        "faults_injected": dict(sorted(Counter(f["kind"] for f in chaos.done if "error" not in f).items())),
        "slack_faults_served": len(slack.served_faults),
        "replica_restarts": chaos.restarts,
        "conversations": len(convs),
        "completed": sum(c.done for c in convs),
        "conversation_errors": [_stalled(c, slack, driver) for c in convs if c.error][:5],
        "conversations_stalled": sum(1 for c in convs if c.error),
        "log_errors": _log_errors([*chaos.retired, *chaos.replicas]),
        "event_retries": driver.event_retries,
        "refund_answers_without_button": driver.without_button,
        "refunds_confirmed_by_typing_yes": driver.typed_yes,
        "events_undelivered": driver.undelivered,
        "wall_s": round(wall, 1),
        "drain_s": round(drained, 1),
        "ok": check["ok"] and not driver.undelivered and all(c.done for c in convs),
        "check": check,
    }


def _stalled(conv: Conversation, slack: FakeSlack, driver: ChaosDriver) -> dict[str, Any]:
    """A conversation that could not go on: its error, what it sent and what its thread showed."""
    posts = slack.by_thread.get((conv.channel, conv.root), [])
    shown = [
        f"{m['at'] - driver.started:.1f}s {(m.get('metadata') or {}).get('event_payload')} {str(m.get('text'))[:60]}"
        for m in posts
    ]
    return {"kind": conv.kind, "error": conv.error, "sent": driver.timeline.get(conv.n, []), "thread": shown[:6]}


def _log_errors(replicas: list[Replica]) -> dict[str, Any]:
    """What the replicas logged at ERROR, grouped by message (outages are expected to log some)."""
    lines = [ln.strip() for r in replicas for ln in r.log if " ERROR " in ln]
    kinds = Counter(ln.split(" ERROR ", 1)[1].split(":", 1)[0] + ": " + ln.split(": ", 2)[-1][:80] for ln in lines)
    return {"count": len(lines), "top": kinds.most_common(8)}


def table(result: dict[str, Any]) -> str:
    p, c = result["params"], result["check"]
    faults = ", ".join(f"{k} {v}" for k, v in result["faults_injected"].items()) or "none"
    return "\n".join(
        [
            "| db | replicas | conversations | messages | faults injected | duplicates | lost | stuck | "
            "dead | out of order | money | ok |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
            f"| {p['database']} | {p['replicas']} | {result['completed']}/{result['conversations']} | "
            f"{c['messages_sent']} | {faults} (+{result['slack_faults_served']} Slack answers) | "
            f"{c['duplicate_replies']} replies, {c['duplicate_staff_posts']} tickets | "
            f"{c['lost_messages'] + c['unanswered'] + c['replies_missing_in_slack']} | "
            f"{c['stuck_in_inbox'] + c['unposted_replies'] + c['unposted_tickets']} | {c['dead_letters']} | "
            f"{c['out_of_order_replies']} | {c['money_violations']} | {'yes' if result['ok'] else 'NO'} |",
        ]
    )
