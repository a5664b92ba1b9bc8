"""Running a hypothesis state machine over a store, bounded in examples and steps, and closing the
store and its loop however the run ends."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from storage.engine import Store


def run_bounded(machine: Any, *, examples: int, steps: int, loop: asyncio.AbstractEventLoop, store: Store) -> None:
    try:
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=examples,
                stateful_step_count=steps,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )
    finally:
        loop.run_until_complete(store.dispose())
        loop.close()
