"""`supportbot shell`: chat with supportbot in a terminal, as a customer or as support staff.

Runs on the configured store (seeded when empty) with the configured model (offline when no key
is set). Reads lines from stdin (`bot.terminal`), so piped input works, a closed stdin ends the
session cleanly, and Ctrl-C ends it at once (exit 130): a turn cut off mid-way rolls back its open
transaction, and a refund it left `processing` is completed by the next start's recovery.
"""

from __future__ import annotations

import asyncio
import logging

from agent.events import Confirmation, Done, Error, Escalation, Event, Reply, Status
from agent.loop import Agent
from agent.providers import build_model, close_model
from bot.errors import UsageError
from bot.terminal import Printer, lines
from desk import Desk, customer, outbox
from desk import staff as desk
from desk.sessions import customer_by_email, open_session
from storage.engine import Store
from storage.settings import Settings
from tools import wording
from tools.codes import Code
from tools.context import Actor, CallContext, Deps
from tools.toolbox import Toolbox, ready

log = logging.getLogger(__name__)

CUSTOMER_HELP = """\
Type a message and press Enter. Also:
  yes / no              confirm or cancel a refund waiting for your confirmation
  /refund-status [ORD]  your refunds, or one order's
  /quit                 leave (Ctrl-D or Ctrl-C work too)"""

# command -> (its usage line, what it does); `help` prints them all, a wrong use prints its own line
STAFF_COMMANDS: dict[str, tuple[str, str]] = {
    "tickets": ("tickets", "open and claimed tickets"),
    "show": ("show N", "ticket N: details, its conversation and its escalation history"),
    "claim": ("claim N", "take ticket N; the bot goes quiet in its conversation"),
    "release": ("release N", "give ticket N back to the queue"),
    "resolve": ("resolve N", "close ticket N; the bot answers its conversation again"),
    "approve": ("approve N", "approve the refund ticket N is about"),
    "deny": ("deny N", "deny the refund ticket N is about"),
    "reply": ("reply N TEXT", "write to ticket N's customer, on their own channel (claims it if open)"),
    "link": ("link N EMAIL", "bind ticket N's customer identity to the customer with EMAIL"),
    "refund-status": ("/refund-status ORD", "any order's refunds"),
    "help": ("help", "this list"),
    "quit": ("/quit", "leave (Ctrl-D or Ctrl-C work too)"),
}
STAFF_HELP = "Staff commands:\n" + "\n".join(f"  {usage:<20} {what}" for usage, what in STAFF_COMMANDS.values())


class BadUsage(Exception):
    """A staff command used wrongly; the shell prints that command's usage line."""


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
        printer.dim(f"{event.text} {wording.confirm_how('shell')}")
    elif isinstance(event, Reply):
        printer.bot(event.text)
        for c in event.citations:  # the help-center articles the reply used
            printer.dim(f"source: {c.title} <{c.url}>")
    elif isinstance(event, Error):
        printer.dim(f"({event.what.replace('_', ' ')})")
    elif isinstance(event, Done):
        pass


async def customer_shell(settings: Settings, *, email: str, provider: str | None, printer: Printer) -> int:
    model = build_model(settings, provider)  # a model that cannot work stops us before the store is touched
    store, deps = await prepare(settings)
    try:
        customer = await customer_by_email(deps, email)
        if customer is None:
            raise UsageError(f"no customer has the email {email!r} (the demo data has sarah@example.com)")
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
        await close_model(model)
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
            cmd = cmd.lstrip("/")
            if cmd in ("quit", "exit"):
                break
            try:
                await staff_command(deps, staff, cmd, args, printer)
            except BadUsage:
                printer.line(f"usage: {STAFF_COMMANDS[cmd][0]}")
        printer.line("bye")
        return 0
    finally:
        await store.dispose()


async def list_tickets(deps: Deps, printer: Printer) -> None:
    rows = await desk.queue(deps)
    if not rows:
        printer.line("no open tickets")
    for t in rows:
        owner = f"claimed by {t.claimed_by}" if t.claimed_by else "unclaimed"
        order = f" {t.order_id}" if t.order_id else ""
        printer.line(
            f"#{t.id} {t.priority} {t.status:<7} {wording.reason_text(t.reason)}{order} "
            f"({t.customer_id or 'unverified'}, {owner})"
        )


def _ticket_id(args: list[str], n: int = 1) -> int:
    """The ticket number of a command that takes `n` arguments, the first one `N` or `#N`."""
    if len(args) != n or not args[0].lstrip("#").isdigit():
        raise BadUsage
    return int(args[0].lstrip("#"))


async def staff_command(deps: Deps, staff: Actor, cmd: str, args: list[str], printer: Printer) -> None:
    if cmd == "help":
        printer.line(STAFF_HELP)
    elif cmd == "tickets":
        await list_tickets(deps, printer)
    elif cmd == "show":
        await show_ticket(deps, staff, _ticket_id(args), printer)
    elif cmd in ("claim", "release", "resolve"):
        act = {"claim": desk.claim, "release": desk.release, "resolve": desk.resolve}[cmd]
        result = await act(deps, ticket_id=_ticket_id(args), staff=staff)
        printer.line(f"{result.code.value}: {result.note}")
    elif cmd in ("approve", "deny"):
        result = await desk.decide(deps, staff=staff, ticket_id=_ticket_id(args), approve=cmd == "approve")
        detail = f" ({result.data.get('status')})" if result.data.get("status") else ""
        printer.line(f"{result.code.value}: {result.note}{detail}")
    elif cmd == "reply":
        if len(args) < 2:
            raise BadUsage
        result = await desk.reply(deps, staff=staff, ticket_id=_ticket_id(args[:1]), text=" ".join(args[1:]))
        printer.line(f"{result.code.value}: {result.note}")
    elif cmd == "link":
        result = await desk.link(deps, staff=staff, ticket_id=_ticket_id(args, 2), customer=args[1])
        printer.line(f"{result.code.value}: {result.note}")
    elif cmd == "refund-status":
        if len(args) > 1:
            raise BadUsage
        printer.line(await refunds_for(deps, staff, args[0] if args else None))
    else:
        printer.line(f"unknown command {cmd[:40]!r}. {STAFF_HELP}")


async def show_ticket(deps: Deps, staff: Actor, ticket_id: int, printer: Printer) -> None:
    result = await desk.details(deps, ticket_id=ticket_id, staff=staff)
    if result.code is not Code.OK:
        printer.line(f"{result.code.value}: {result.note}")
        return
    t = result.data
    owner = f"claimed by {t['claimed_by']}" if t["claimed_by"] else t["status"]
    printer.line(f"#{t['ticket_id']} {t['priority']} {owner}: {wording.reason_text(str(t['reason']))}")
    printer.line(
        f"  customer: {t['customer'] or 'not verified'}; order: {t['order_id'] or '-'}; refund: "
        f"{t['refund_id'] or '-'}; via {t['channel'] or '-'}; opened {t['created_at']}"
    )
    printer.line("history:")
    for e in t["history"]:
        note = f": {e['note']}" if e["note"] else ""
        printer.line(f"  {e['at']} {e['kind']} {e['priority']} {e['reason']} by {e['actor']}{note}")
    printer.line("conversation:" if t["transcript"] else "conversation: (none stored)")
    for line in t["transcript"]:
        printer.line(f"  {line['who']}: {line['text']}")


async def refunds_for(deps: Deps, staff: Actor, order_id: str | None) -> str:
    return await customer.refund_status(deps, CallContext("staff-shell", staff, channel="shell"), order_id)
