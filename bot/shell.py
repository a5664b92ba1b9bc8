"""`supportbot shell`: chat with supportbot in a terminal, as a customer or as support staff.

Runs on the embedded store (seeded on first run) with the configured model (offline when no key
is set). Reads lines from stdin, so piped input works and a closed stdin ends the session cleanly.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from typing import TextIO

from agent.desk import Desk
from agent.events import Confirmation, Done, Error, Escalation, Event, Reply, Status
from agent.loop import Agent
from agent.providers import build_model
from bot.errors import UsageError
from storage.engine import Store
from storage.settings import Settings
from tools import desk, outbox, tickets, wording
from tools.context import Actor, CallContext, Deps
from tools.get_refund_status import refund_status
from tools.sessions import customer_by_email, open_session
from tools.toolbox import Toolbox, ready

log = logging.getLogger(__name__)

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
  reply N TEXT               write to ticket N's customer, on their own channel
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

    def staff(self, text: str) -> None:
        self.line(f"{wording.STAFF_REPLY_LABEL.lower()}> {text}")

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
    """An event as the customer in the terminal may see it (no ticket numbers, priorities or reasons)."""
    if isinstance(event, Status):
        printer.dim(f"{event.text}…")
    elif isinstance(event, Escalation) and not event.hidden and event.created:
        printer.dim("a member of our support team has been asked to help")
    elif isinstance(event, Confirmation):
        printer.dim(f"refund {event.amount} for {event.order_id} is waiting for you. {wording.CONFIRM_HINT['shell']}")
    elif isinstance(event, Reply):
        printer.bot(event.text)
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
        front = Desk(Agent(model=model, toolbox=Toolbox(deps)))
        ctx = await open_session(deps, channel="shell", actor=Actor.customer(customer.id, subject=f"shell:{email}"))
        printer.line(
            f"supportbot shell: you are {customer.name} <{customer.email}>; model: {model.name}. /help for help."
        )
        watcher = asyncio.create_task(watch(deps, ctx, printer), name="shell-messages")
        try:
            await converse(front, ctx, printer)
        finally:
            watcher.cancel()
        printer.line("bye")
        return 0
    finally:
        await store.dispose()


async def converse(front: Desk, ctx: CallContext, printer: Printer) -> None:
    async for text in lines("you> ", printer):
        if text in ("/quit", "/exit"):
            break
        if text == "/help":
            printer.line(CUSTOMER_HELP)
            continue
        async for event in front.say(ctx, text):
            show(event, printer)
            if isinstance(event, Done):
                await outbox.delivered(front.deps, event.said)  # printed just now
        await print_messages(front.deps, ctx, printer)


async def print_messages(deps: Deps, ctx: CallContext, printer: Printer) -> None:
    """What the support team wrote (replies, notices) since it was last printed."""
    rows = await outbox.for_session(deps, ctx.session_id, undelivered=True)
    for row in rows:
        (printer.staff if row.kind == "staff_reply" else printer.bot)(row.text)
    await outbox.delivered(deps, [r.id for r in rows])


async def watch(deps: Deps, ctx: CallContext, printer: Printer, every: float = 2.0) -> None:
    """While the customer is typing, a staff reply made anywhere (Slack, another shell) shows up."""
    while True:
        await asyncio.sleep(every)  # a polling interval for another process's writes, not synchronization
        try:
            await print_messages(deps, ctx, printer)
        except Exception:  # the store blinked: try again at the next interval
            log.debug("could not read new messages", exc_info=True)


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
        act = {"claim": desk.claim, "release": desk.release, "resolve": desk.resolve}[cmd]
        result = await act(deps, ticket_id=ticket_no(args[0]), staff=staff)
        printer.line(f"{result.code.value}: {result.note}")
    elif cmd in ("approve", "deny"):
        result = await desk.decide(deps, staff=staff, ticket_id=ticket_no(args[0]), approve=cmd == "approve")
        detail = f" ({result.data.get('status')})" if result.data.get("status") else ""
        printer.line(f"{result.code.value}: {result.note}{detail}")
    elif cmd == "reply":
        result = await desk.reply(deps, staff=staff, ticket_id=ticket_no(args[0]), text=" ".join(args[1:]))
        printer.line(f"{result.code.value}: {result.note}")
    elif cmd == "link":
        result = await desk.link(deps, staff=staff, ticket_id=ticket_no(args[0]), customer=args[1])
        printer.line(f"{result.code.value}: {result.note}")
    elif cmd == "refund-status":
        result = await refunds_for(deps, staff, args[0] if args else None)
        printer.line(result)
    else:
        printer.line(f"unknown command {cmd!r}. {STAFF_HELP}")


def ticket_no(arg: str) -> int:
    return int(arg.lstrip("#"))


async def refunds_for(deps: Deps, staff: Actor, order_id: str | None) -> str:
    result = await refund_status(deps, CallContext("staff-shell", staff), order_id)
    return wording.staff_refund_status(result.code, list(result.data.get("refunds", [])))
