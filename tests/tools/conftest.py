from __future__ import annotations

import pytest

from storage.engine import Store
from storage.importer import seed
from storage.settings import Settings
from storage.types import FrozenClock
from tools.context import Actor, CallContext, Deps
from tools.gateway import StoreGateway
from tools.sessions import open_session
from tools.toolbox import Toolbox

SARAH, JAMES = "CUST-1001", "CUST-1002"


@pytest.fixture
async def deps(store: Store, settings: Settings, clock: FrozenClock) -> Deps:
    await seed(store, clock)
    return Deps(store=store, settings=settings, clock=clock, gateway=StoreGateway(store, clock))


@pytest.fixture
def toolbox(deps: Deps) -> Toolbox:
    return Toolbox(deps)


async def session_for(deps: Deps, actor: Actor) -> CallContext:
    return await open_session(deps, channel="test", actor=actor)


@pytest.fixture
async def sarah(deps: Deps) -> CallContext:
    return await session_for(deps, Actor.customer(SARAH))


@pytest.fixture
async def james(deps: Deps) -> CallContext:
    return await session_for(deps, Actor.customer(JAMES))


@pytest.fixture
async def anon(deps: Deps) -> CallContext:
    return await session_for(deps, Actor.unverified("T9:U9"))


@pytest.fixture
async def staff(deps: Deps) -> CallContext:
    return await session_for(deps, Actor.staff("U-STAFF"))
