"""Everything the Slack face holds, built in one place on the process's `Host` (with injectable
parts for tests and the benchmark): Slack clients, delivery, people, staff board, its turns, and
its registration with the process's one work queue."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from slack_sdk.web.async_client import AsyncWebClient

from agent.loop import Agent
from agent.model import Model
from bot.host import Host
from bot.slack.board import StaffBoard
from bot.slack.client import make_client
from bot.slack.delivery import SlackOut, SlackPacer
from bot.slack.people import People
from bot.slack.turns import Turns
from bot.workers import Workers
from desk.inbox import Queue
from storage.engine import Store
from storage.settings import Settings
from storage.types import Clock
from tools.context import Deps

log = logging.getLogger(__name__)
WORKING = "is looking into it…"


@dataclass
class Runtime:
    host: Host
    client: AsyncWebClient
    out: SlackOut
    people: People
    board: StaffBoard
    turns: Turns
    _delivering: asyncio.Task[None] | None = field(default=None, init=False)
    _background: set[asyncio.Task[None]] = field(default_factory=set, init=False)
    _again: bool = field(default=False, init=False)

    @classmethod
    def create(
        cls,
        settings: Settings,
        *,
        store: Store | None = None,
        model: Model | None = None,
        client: AsyncWebClient | None = None,
        clock: Clock | None = None,
    ) -> Runtime:
        return cls.on(Host.create(settings, store=store, model=model, clock=clock), client=client)

    @classmethod
    def on(cls, host: Host, *, client: AsyncWebClient | None = None, poster: AsyncWebClient | None = None) -> Runtime:
        client = client or make_client(host.settings)
        poster = poster or (make_client(host.settings, retries=False) if client.retry_handlers else client)
        pacer = SlackPacer(enabled=host.settings.slack_pace, store=host.store)
        out = SlackOut(client, poster, host.deps, host.owner, pacer)
        people = People(out, host.deps)
        board = StaffBoard(out, host.deps)
        turns = Turns(host, people, out, board)
        rt = cls(host, client, out, people, board, turns)
        host.workers.serve("slack", handle=turns.handle, on_dead=turns.dead_letter)
        return rt

    @property
    def settings(self) -> Settings:
        return self.host.settings

    @property
    def store(self) -> Store:
        return self.host.store

    @property
    def clock(self) -> Clock:
        return self.host.clock

    @property
    def deps(self) -> Deps:
        return self.host.deps

    @property
    def agent(self) -> Agent:
        return self.host.agent

    @property
    def inbox(self) -> Queue:
        return self.host.queue

    @property
    def workers(self) -> Workers:
        return self.host.workers

    def status_soon(self, channel: str, thread_ts: str, text: str = WORKING) -> None:
        """The thread's status line, set in the background as soon as a customer's message is stored
        (not when a worker gets to it); an empty `text` clears it."""
        task = asyncio.create_task(self.out.status(channel, thread_ts, text), name="slack-status")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def deliver_soon(self) -> None:
        """An act wrote rows for Slack (a notice, a staff reply): post them soon, in the background."""
        if self._delivering is not None and not self._delivering.done():
            self._again = True
            return
        self._delivering = asyncio.create_task(self._deliver(), name="slack-deliver")

    async def _deliver(self) -> None:
        while True:
            self._again = False
            try:
                await self.out.deliver_loose()
            except Exception:
                log.exception("delivering outgoing messages failed (housekeeping retries)")
            if not self._again:
                return

    async def drain(self, grace: float = 10.0) -> None:
        await self.board.drain(grace)
        if self._delivering is not None:
            await asyncio.wait({self._delivering}, timeout=grace)

    async def identify(self) -> None:
        """Learn our own bot user id (for mention detection); Bolt checks the token itself too."""
        try:
            auth = await self.client.auth_test()
            self.turns.bot_user = auth.get("user_id")
        except Exception as exc:  # Slack unreachable at start: Bolt retries on the first request
            log.warning("auth.test failed at start: %s", type(exc).__name__)
