"""Everything the Slack face holds, built in one place on the process's `Host` (with injectable
parts for tests and the benchmark): Slack client, delivery, people, staff board, inbox, workers."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from slack_sdk.web.async_client import AsyncWebClient

from agent.loop import Agent
from agent.model import Model
from bot.host import Host
from bot.slack.board import StaffBoard
from bot.slack.client import make_client
from bot.slack.delivery import SlackOut
from bot.slack.inbox import Inbox, Workers
from bot.slack.people import People
from bot.slack.turns import Turns
from storage.engine import Store
from storage.settings import Settings
from storage.types import Clock
from tools.context import Deps

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    host: Host
    client: AsyncWebClient
    out: SlackOut
    people: People
    board: StaffBoard
    inbox: Inbox
    turns: Turns
    workers: Workers

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
    def on(cls, host: Host, *, client: AsyncWebClient | None = None) -> Runtime:
        client = client or make_client(host.settings)
        out = SlackOut(client, host.store, host.clock, host.settings)
        people = People(out, host.deps)
        board = StaffBoard(out, host.deps)
        inbox = Inbox(host.store, host.clock, host.settings, owner=host.owner)
        turns = Turns(host.deps, host.agent, people, out, board)
        workers = Workers(inbox, turns.handle, on_dead=turns.dead_letter, settings=host.settings)
        return cls(host, client, out, people, board, inbox, turns, workers)

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

    async def identify(self) -> None:
        """Learn our own bot user id (for mention detection); Bolt checks the token itself too."""
        try:
            auth = await self.client.auth_test()
            self.turns.bot_user = auth.get("user_id")
        except Exception as exc:  # Slack unreachable at start: Bolt retries on the first request
            log.warning("auth.test failed at start: %s", type(exc).__name__)
