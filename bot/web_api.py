"""The HTTP chat API for a website's support widget (being built: issue 11)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from bot.runtime import Runtime


def add_routes(app: web.Application, rt: Runtime) -> None:
    """Mount /api/* on the bot's HTTP server."""
