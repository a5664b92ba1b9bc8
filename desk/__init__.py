"""The desk: every act a person can take on a conversation, and the session's reads and writes,
written once. Every face (Slack, the website, the shell, MCP, the eval and the benchmark) parses
its input, calls one act here with the actor it verified, and renders the result.

    the customer's acts      say · decide_refund (Confirm / Cancel) · refund_status   desk.customer
    staff's acts             claim · release · resolve · approve / deny · reply ·      desk.staff
                             link · take_over · dead_letter · save_article
    the session's I/O        sessions, the outgoing log, the inbox, the staff board,   desk.sessions, .outbox,
                             the turn log of streaming faces                           .inbox, .board, .turnlog

The agent loop (`agent.loop`) is a function `say` calls: the desk reads the turn's inputs, runs
the loop, and writes its result. Exceptions: `desk.errors`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from agent import policy
from agent.events import Event
from agent.loop import Agent
from desk import customer, staff
from storage.models import ChatSession, Refund, Ticket
from tools import articles, tickets
from tools.codes import ToolResult
from tools.context import Actor, CallContext, Deps
from tools.toolbox import Toolbox


class Desk:
    """The acts, bound to a process's dependencies. `agent` runs the customer's turns; a face that
    has no model of its own (MCP: the client's model is the loop) builds the desk on a toolbox."""

    def __init__(self, agent: Agent | None = None, *, toolbox: Toolbox | None = None) -> None:
        self._agent = agent
        self.toolbox = toolbox or (agent.toolbox if agent else None)
        assert self.toolbox is not None, "a desk needs an agent or a toolbox"
        self.deps: Deps = self.toolbox.deps

    @property
    def agent(self) -> Agent:
        assert self._agent is not None, "this desk has no agent (MCP): customers' turns run elsewhere"
        return self._agent

    # --- the customer's acts -------------------------------------------------------------------------
    def say(
        self, ctx: CallContext, text: str, *, inbox_id: int | None = None, session: ChatSession | None = None
    ) -> AsyncIterator[Event]:
        return customer.say(self.deps, self._agent, ctx, text, inbox_id=inbox_id, session=session)

    async def decide_refund(
        self, ctx: CallContext, refund_id: str, *, yes: bool, typed: str | None = None, inbox_id: int | None = None
    ) -> tuple[ToolResult, str, int | None]:
        return await customer.decide_refund(self.deps, ctx, refund_id, yes=yes, typed=typed, inbox_id=inbox_id)

    async def decide_click(
        self, *, actor: Actor, refund_id: str, yes: bool, inbox_id: int | None = None
    ) -> tuple[ToolResult, str, int | None]:
        return await customer.decide_click(self.deps, actor=actor, refund_id=refund_id, yes=yes, inbox_id=inbox_id)

    async def ask_who(self, ctx: CallContext) -> Ticket | None:
        return await customer.ask_who(self.deps, ctx)

    async def pending_refund(self, ctx: CallContext) -> Refund | None:
        return await customer.pending_refund(self.deps, ctx)

    async def refund_status(self, ctx: CallContext, order_id: str | None) -> str:
        return await customer.refund_status(self.deps, ctx, order_id)

    async def call_tool(self, ctx: CallContext, name: str, args: Any) -> ToolResult:
        """A tool called by another agent runtime (MCP): the same toolbox, and the same verdicts the
        loop applies (another customer's order opens the same grouped, hidden P1)."""
        assert self.toolbox is not None
        result = await self.toolbox.call(name, args, ctx)
        verdict = policy.for_tool(result.code)
        if verdict is not None and not verdict.already_ticketed:
            await policy.apply(self.deps, ctx, verdict, f"Over MCP, {name} was refused ({result.code.value}).")
        return result

    # --- staff's acts (desk.staff) -------------------------------------------------------------------
    claim = staticmethod(staff.claim)
    release = staticmethod(staff.release)
    resolve = staticmethod(staff.resolve)
    decide = staticmethod(staff.decide)
    reply = staticmethod(staff.reply)
    link = staticmethod(staff.link)
    take_over = staticmethod(staff.take_over)
    dead_letter = staticmethod(staff.dead_letter)
    details = staticmethod(tickets.details)
    save_article = staticmethod(articles.draft_from_ticket)  # a resolved ticket's answer, as a draft
