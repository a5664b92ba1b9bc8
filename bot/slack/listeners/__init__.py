"""Every route the Slack app serves, registered in one place per group."""

from __future__ import annotations

from typing import TYPE_CHECKING

from slack_bolt.async_app import AsyncApp

from bot.slack.listeners import actions, commands, events

if TYPE_CHECKING:
    from bot.slack.runtime import Runtime

EVENTS = events.EVENTS
COMMANDS = commands.COMMANDS
ACTIONS = actions.ACTIONS


def register(app: AsyncApp, rt: Runtime) -> None:
    events.register(app, rt)
    actions.register(app, rt)
    commands.register(app, rt)
