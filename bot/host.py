"""What every face of a running process shares, built once from settings: the store, the clock,
the tools' dependencies, the agent and the desk over it, the one work queue with its workers, and
this replica's name (the owner of its leases). Faces get this, never each other's parts."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass

from agent.loop import Agent
from agent.model import Model
from agent.providers import build_model, close_model
from bot.workers import Workers
from desk import Desk
from desk.inbox import Queue
from storage.engine import Store
from storage.notify import INBOX, Listener
from storage.settings import Settings
from storage.types import Clock, SystemClock
from tools.context import Deps
from tools.toolbox import Toolbox, make_deps


def replica_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class Host:
    settings: Settings
    store: Store
    clock: Clock
    deps: Deps
    agent: Agent
    desk: Desk
    queue: Queue
    workers: Workers
    owner: str
    listener: Listener  # PostgreSQL: other replicas' new work wakes ours at once (the server starts it)

    @classmethod
    def create(
        cls,
        settings: Settings,
        *,
        store: Store | None = None,
        model: Model | None = None,
        clock: Clock | None = None,
    ) -> Host:
        store = store or Store.from_settings(settings)
        clock = clock or SystemClock()
        deps = make_deps(store, settings, clock)
        agent = Agent(model=model or build_model(settings), toolbox=Toolbox(deps))
        owner = replica_id()
        queue = Queue(store, clock, settings, owner=owner)
        workers = Workers(queue, settings=settings)
        listener = Listener(store.engine.url.render_as_string(hide_password=False))
        listener.on(INBOX, lambda _payload: workers.wake())
        return cls(settings, store, clock, deps, agent, Desk(agent), queue, workers, owner, listener)

    async def close(self) -> None:
        """The model's connections and the store's; the last thing a process does with its host."""
        await close_model(self.agent.model)
        await self.store.dispose()
