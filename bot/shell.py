"""`supportbot shell`: chat with supportbot in a terminal, as a customer or as support staff.

Runs on the embedded store (seeded on first run) with the configured model (offline when no key
is set). Reads lines from stdin, so piped input works and a closed stdin ends the session cleanly.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from typing import TextIO

from agent.chat import Conversation, build_model
from agent.events import Confirmation, Done, Error, Escalation, Event, Reply, Status
from agent.loop import Agent
from bot.errors import UsageError
from storage.engine import Store
from storage.models import ChatSession, Ticket
from storage.settings import Settings
from tools import refunds, tickets
from tools.codes import Code
from tools.context import Actor, CallContext, Deps
from tools.get_refund_status import refund_status
from tools.sessions import customer_by_email, open_session
from tools.toolbox import Toolbox, ready

CUSTOMER_HELP = """\
Type a message and press Enter. Also:
  yes / no              confirm or cancel a refund waiting for your confirmation
  /refund-status [ORD]  your refunds, or one order's
  /quit                 leave (Ctrl-D works too)"""

STAFF_HELP = """\
Staff commands:
  tickets                    open and claimed tickets
  claim N | release N | resolve N
  approve N | deny N         decide the refund a ticket is about
  link N EMAIL               bind ticket N's customer identity to the customer with EMAIL
  /refund-status ORD         any order's refunds
  /quit"""


class Printer:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()

    def dim(self, text: str) -> None:
        self.line(f"\033[2m{text}\033[0m" if self.tty else f"  · {text}")

    def bot(self, text: str) -> None:
        self.line(f"supportbot> {text}")

    def line(self, text: str) -> None:
        print(text, file=self.out, flush=True)


async def lines(prompt: str, printer: Printer) -> AsyncIterator[str]:
    """stdin one line at a time, off the event loop; ends at EOF."""
    while True:
        if printer.tty and sys.stdin.isatty():
            print(prompt, end="", file=printer.out, flush=True)
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            return
        line = line.strip()
        if line:
            yield line


async def prepare(settings: Settings) -> tuple[Store, Deps]:
    store = Store.from_settings(settings)
    return store, await ready(store, settings)


def show(event: Event, printer: Printer) -> None:
    if isinstance(event, Status):
        printer.dim(f"{event.text}…")
    elif isinstance(event, Escalation):
        verb = "opened" if event.created else "updated"
        printer.dim(f"ticket #{event.ticket_id} {verb} for our team ({event.priority}, {event.reason})")
    elif isinstance(event, Confirmation):
        printer.dim(f"refund {event.amount} for {event.order_id} is waiting for you: type yes to confirm, no to cancel")
    elif isinstance(event, Reply):
        printer.bot(event.text)
        for c in event.citations:  # the help-center articles the reply used
            printer.dim(f"source: {c.title} <{c.url}>")
    elif isinstance(event, Error):
        printer.dim(f"({event.what.replace('_', ' ')})")
    elif isinstance(event, Done):
        pass


async def customer_shell(settings: Settings, *, email: str, provider: str | None, printer: Printer) -> int:
    store, deps = await prepare(settings)
    try:
        customer = await customer_by_email(deps, email)
        if customer is None:
            raise UsageError(f"no customer has the email {email!r} (the demo data has sarah@example.com)")
        model = build_model(settings, provider)
        agent = Agent(model=model, toolbox=Toolbox(deps))
        ctx = await open_session(deps, channel="shell", actor=Actor.customer(customer.id, subject=f"shell:{email}"))
        printer.line(
            f"supportbot shell: you are {customer.name} <{customer.email}>; model: {model.name}. /help for help."
        )
        conversation = Conversation(agent, ctx)
        async for text in lines("you> ", printer):
            if text in ("/quit", "/exit"):
                break
            if text == "/help":
                printer.line(CUSTOMER_HELP)
                continue
            async for event in conversation.say(text):
                show(event, printer)
        printer.line("bye")
        return 0
    finally:
        await store.dispose()


async def staff_shell(settings: Settings, *, name: str, printer: Printer) -> int:
    store, deps = await prepare(settings)
    staff = Actor.staff(name)
    try:
        printer.line(f"supportbot staff shell: you are {name}. help for commands.")
        await list_tickets(deps, printer)
        async for text in lines("staff> ", printer):
            cmd, *args = text.split()
            if cmd in ("/quit", "quit", "exit"):
                break
            try:
                await staff_command(deps, staff, cmd.lstrip("/"), args, printer)
            except (ValueError, IndexError):
                printer.line(f"usage: {STAFF_HELP}")
        printer.line("bye")
        return 0
    finally:
        await store.dispose()


async def list_tickets(deps: Deps, printer: Printer) -> None:
    rows = await tickets.list_tickets(deps)
    if not rows:
        printer.line("no open tickets")
    for t in rows:
        owner = f"claimed by {t.claimed_by}" if t.claimed_by else "unclaimed"
        order = f" {t.order_id}" if t.order_id else ""
        printer.line(
            f"#{t.id} {t.priority} {t.status:<7} {tickets.reason_text(t.reason)}{order} "
            f"({t.customer_id or 'unverified'}, {owner})"
        )


async def staff_command(deps: Deps, staff: Actor, cmd: str, args: list[str], printer: Printer) -> None:
    if cmd == "help":
        printer.line(STAFF_HELP)
    elif cmd == "tickets":
        await list_tickets(deps, printer)
    elif cmd in ("claim", "release", "resolve"):
        fn = {"claim": tickets.claim, "release": tickets.release, "resolve": tickets.resolve}[cmd]
        result = await fn(deps, ticket_id=int(args[0].lstrip("#")), staff=staff)
        printer.line(f"{result.code.value}: {result.note}")
    elif cmd in ("approve", "deny"):
        result = await refunds.decide_for_ticket(
            deps, ticket_id=int(args[0].lstrip("#")), staff=staff, approve=cmd == "approve"
        )
        detail = f" ({result.data.get('status')})" if result.data.get("status") else ""
        printer.line(f"{result.code.value}: {result.note}{detail}")
    elif cmd == "link":
        ticket_id, email = int(args[0].lstrip("#")), args[1]
        async with deps.store.read() as s:
            ticket = await s.get(Ticket, ticket_id)
            session = await s.get(ChatSession, ticket.session_id) if ticket and ticket.session_id else None
        if session is None or not session.subject:
            printer.line("NOT_FOUND: that ticket has no channel identity to link")
            return
        result = await tickets.link_customer(
            deps, staff=staff, channel=session.channel, subject=session.subject, customer=email, ticket_id=ticket_id
        )
        printer.line(f"{result.code.value}: {result.note}")
    elif cmd == "refund-status":
        result = await refunds_for(deps, staff, args[0] if args else None)
        printer.line(result)
    else:
        printer.line(f"unknown command {cmd!r}. {STAFF_HELP}")


async def refunds_for(deps: Deps, staff: Actor, order_id: str | None) -> str:
    result = await refund_status(deps, CallContext("staff-shell", staff), order_id)
    if result.code is not Code.OK:
        return f"{result.code.value}: {result.note}"
    rows = result.data.get("refunds", [])
    return "\n".join(f"{r['refund_id']} {r['order_id']} {r['amount']} {r['status']}" for r in rows) or "no refunds"
