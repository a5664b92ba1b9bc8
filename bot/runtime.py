"""Everything a running Slack bot holds, built in one place from settings (and injectable parts
for tests and the benchmark): store, tools, agent, Slack client, inbox, workers, staff board."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from agent.chat import build_model
from agent.loop import Agent
from agent.model import Model
from bot.app import build_app, make_client
from bot.inbox import Inbox, Workers
from bot.people import People
from bot.slack_out import SlackOut
from bot.staff import StaffBoard
from bot.turns import Turns
from storage.engine import Store
from storage.settings import Settings
from storage.types import Clock, SystemClock
from tools.context import Deps
from tools.toolbox import Toolbox, make_deps

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    store: Store
    clock: Clock
    deps: Deps
    agent: Agent
    client: AsyncWebClient
    out: SlackOut
    people: People
    board: StaffBoard
    inbox: Inbox
    turns: Turns
    workers: Workers
    app: AsyncApp = field(init=False)

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
        store = store or Store.from_settings(settings)
        clock = clock or SystemClock()
        deps = make_deps(store, settings, clock)
        agent = Agent(model=model or build_model(settings), toolbox=Toolbox(deps))
        client = client or make_client(settings)
        out = SlackOut(client, store, clock, settings)
        people = People(out, deps)
        board = StaffBoard(out, deps)
        inbox = Inbox(store, clock, settings)
        turns = Turns(deps, agent, people, out, board)
        workers = Workers(inbox, turns.handle, on_dead=turns.dead_letter, settings=settings)
        rt = cls(settings, store, clock, deps, agent, client, out, people, board, inbox, turns, workers)
        rt.app = build_app(rt)
        return rt

    async def identify(self) -> None:
        """Learn our own bot user id (for mention detection); Bolt checks the token itself too."""
        try:
            auth = await self.client.auth_test()
            self.turns.bot_user = auth.get("user_id")
        except Exception as exc:  # Slack unreachable at start: Bolt retries on the first request
            log.warning("auth.test failed at start: %s", type(exc).__name__)
