"""`supportbot mcp`: the guarded tools served over MCP, so another agent runtime can use them.

A new face only. The six model tools run through `Toolbox.call` (validation, guards, audit log)
with the schemas the in-process model sees; staff actions go through `tools.tickets` and
`tools.refunds`, which audit themselves. Identity comes from the command line (`--as EMAIL` or
`--staff ID`) and never from a tool's arguments; staff-only tools are listed only to staff.
Everything a customer-bound client receives passes the sanitizer, value by value, without the
internal outcome code (`is_error` and the note carry the meaning).

Money moves only on a person's own answer, never on the model's: a refund that `process_refund`
leaves awaiting confirmation is put to the person at the client through MCP elicitation (a
server-to-client request on 2025 connections, an `InputRequiredResult` round trip with sealed
`requestState` on 2026-07-28 ones), and so is a staff approval. A client that cannot elicit
leaves the refund waiting until it expires, and cannot approve. There is no confirm tool.
"""

from __future__ import annotations

import hmac
import json
import logging
import socket
import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.server.elicitation import render_elicitation_schema
from mcp.server.request_state import RequestStateBoundary, RequestStateSecurity
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError
from mcp_types.version import is_version_at_least
from pydantic import BaseModel, Field, ValidationError
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from agent.confirmations import refund_prompt
from desk import Desk, customer, outbox
from desk import staff as desk
from desk.sessions import customer_by_email, open_session
from storage.engine import Store
from storage.settings import Settings
from storage.states import RefundStatus
from tools import wording
from tools.codes import Code, ToolResult
from tools.context import Actor, CallContext, Deps, Tool
from tools.sanitizer import sanitize
from tools.toolbox import TOOLS, Toolbox, ready, validation_note

log = logging.getLogger(__name__)

NAME = "supportbot"
HOST = "127.0.0.1"
INPUT_REQUIRED_VERSION = "2026-07-28"  # from here on, tools/call asks through InputRequiredResult
ASK = "confirm"  # the key of our one input request


class Confirm(BaseModel):
    confirm: bool = Field(description="Yes, go ahead.")


CONFIRM_SCHEMA = render_elicitation_schema(Confirm)


# --- staff-only tools ---------------------------------------------------------------------------
class ListTicketsInput(BaseModel):
    """List the open and claimed support tickets, most urgent first."""


class ClaimTicketInput(BaseModel):
    """Claim a ticket so that you own it; a ticket someone else claimed is refused."""

    ticket_id: int = Field(ge=1, description="The ticket number, e.g. 12.")


class ReleaseTicketInput(ClaimTicketInput):
    """Give back a ticket you claimed, so that someone else can take it."""


class ResolveTicketInput(ClaimTicketInput):
    """Resolve a ticket that is open, or claimed by you."""


class ApproveRefundInput(ClaimTicketInput):
    """Approve the over-limit refund a ticket is about. You are asked to confirm before any money is sent."""


class DenyRefundInput(ClaimTicketInput):
    """Deny the over-limit refund a ticket is about; no money is sent."""


class ReplyInput(ClaimTicketInput):
    """Write to the ticket's customer on their own channel (Slack thread, website chat, shell).
    Replying to an open ticket claims it; the bot stays quiet in that conversation until it is resolved."""

    text: str = Field(min_length=1, max_length=3000, description="What the customer reads.")


async def _list_tickets(args: ListTicketsInput, ctx: CallContext, deps: Deps) -> ToolResult:
    rows = await desk.queue(deps)
    return ToolResult(Code.OK, "" if rows else "No open tickets.", {"tickets": [desk.describe(t) for t in rows]})


def _on_ticket(action: Callable[..., Awaitable[ToolResult]], **kw: Any) -> Callable[..., Awaitable[ToolResult]]:
    async def run(args: ClaimTicketInput, ctx: CallContext, deps: Deps) -> ToolResult:
        return await action(deps, ticket_id=args.ticket_id, staff=ctx.actor, **kw)

    return run


async def _reply(args: ReplyInput, ctx: CallContext, deps: Deps) -> ToolResult:
    return await desk.reply(deps, staff=ctx.actor, ticket_id=args.ticket_id, text=args.text)


STAFF_TOOLS: tuple[Tool, ...] = (
    Tool("list_tickets", ListTicketsInput, _list_tickets, "Listing tickets"),
    Tool("claim_ticket", ClaimTicketInput, _on_ticket(desk.claim), "Claiming the ticket"),
    Tool("release_ticket", ReleaseTicketInput, _on_ticket(desk.release), "Releasing the ticket"),
    Tool("resolve_ticket", ResolveTicketInput, _on_ticket(desk.resolve), "Resolving the ticket"),
    Tool("approve_refund", ApproveRefundInput, _on_ticket(desk.decide, approve=True), "Approving"),
    Tool("deny_refund", DenyRefundInput, _on_ticket(desk.decide, approve=False), "Denying"),
    Tool("reply_to_customer", ReplyInput, _reply, "Replying to the customer"),
)


# --- the face -----------------------------------------------------------------------------------
class McpFace:
    """One bound identity's MCP session: lists the tools it may use and answers their calls."""

    def __init__(self, deps: Deps, ctx: CallContext) -> None:
        self.deps = deps
        self.ctx = ctx
        self.toolbox = Toolbox(deps)
        self.desk = Desk(toolbox=self.toolbox)
        self.staff_tools = {t.name: t for t in STAFF_TOOLS} if ctx.actor.kind == "staff" else {}

    async def list_tools(self, rctx: ServerRequestContext, params: Any) -> types.ListToolsResult:
        listed = [*TOOLS, *self.staff_tools.values()]
        return types.ListToolsResult(
            tools=[
                types.Tool(name=t.name, description=t.description, input_schema=t.schema()["input_schema"])
                for t in listed
            ]
        )

    async def call_tool(
        self, rctx: ServerRequestContext, params: types.CallToolRequestParams
    ) -> types.CallToolResult | types.InputRequiredResult:
        try:
            if params.request_state is not None:  # the answer round of a 2026-07-28 question
                return await self._resume(params.request_state, params.input_responses or {})
            await customer.expire_lapsed(self.deps)  # a lapsed confirmation never blocks a new refund
            args = params.arguments or {}
            staff_tool = self.staff_tools.get(params.name)
            if staff_tool is not None:
                return await self._staff_call(rctx, staff_tool, args)
            result = await self.desk.call_tool(self.ctx, params.name, args)  # the loop's verdicts, applied
            if result.code is Code.AWAITING_CONFIRMATION or (
                result.code is Code.REFUND_EXISTS and result.data.get("status") == RefundStatus.AWAITING_CONFIRMATION
            ):
                refund_id = str(result.data["refund_id"])
                answer = await self._ask(rctx, await self._refund_question(refund_id), f"refund:{refund_id}")
                if isinstance(answer, types.InputRequiredResult):
                    return answer
                result = await self._settle_refund(refund_id, answer)
            return await self._present(result)
        except Exception:  # tool failures are data: the client sees a plain failure, the log the detail
            log.exception("mcp tool %s failed", params.name[:64])
            payload = {"outcome": "failed", "note": wording.MCP_FAILED}
            return types.CallToolResult(content=[_text(payload)], structured_content=payload, is_error=True)

    async def _staff_call(
        self, rctx: ServerRequestContext, tool: Tool, args: dict[str, Any]
    ) -> types.CallToolResult | types.InputRequiredResult:
        try:
            parsed = tool.input.model_validate(args)
        except ValidationError as err:
            return await self._present(ToolResult(Code.INVALID_INPUT, validation_note(err)))
        if tool.name == "approve_refund":
            question = await self._approval_question(parsed.ticket_id)
            if question is not None:
                answer = await self._ask(rctx, question, f"approve:{parsed.ticket_id}")
                if isinstance(answer, types.InputRequiredResult):
                    return answer
                return await self._present(await self._settle_approval(parsed.ticket_id, answer))
        return await self._present(await tool.run(parsed, self.ctx, self.deps))

    # --- asking the person at the client ---------------------------------------------------------
    async def _ask(
        self, rctx: ServerRequestContext, message: str, state: str
    ) -> bool | None | types.InputRequiredResult:
        """True or False: the person's answer. None: this client cannot ask. On 2026-07-28 connections,
        the question itself: the client asks and calls again with the answer and the sealed `state`."""
        caps = rctx.session.client_capabilities
        if caps is None or caps.elicitation is None:
            return None
        if is_version_at_least(rctx.protocol_version, INPUT_REQUIRED_VERSION):
            form = types.ElicitRequestFormParams(message=message, requested_schema=CONFIRM_SCHEMA)
            return types.InputRequiredResult(
                input_requests={ASK: types.ElicitRequest(params=form)}, request_state=state
            )
        try:
            return _yes(await rctx.session.elicit_form(message, CONFIRM_SCHEMA, related_request_id=rctx.request_id))
        except MCPError as exc:
            log.warning("the client could not ask for confirmation: %s", exc.error.message)
            return None

    async def _resume(self, state: str, responses: dict[str, Any]) -> types.CallToolResult:
        """The answer round. `state` is what we minted (the SDK's boundary verified its seal, tool and
        arguments); the state machine re-checks ownership and status anyway."""
        response = responses.get(ASK)
        answer = _yes(response) if isinstance(response, types.ElicitResult) else None
        kind, _, ident = state.partition(":")
        if kind == "refund":
            return await self._present(await self._settle_refund(ident, answer))
        if kind == "approve" and ident.isdigit() and self.staff_tools:
            return await self._present(await self._settle_approval(int(ident), answer))
        return await self._present(ToolResult(Code.INVALID_INPUT, "Nothing is waiting for that answer."))

    async def _settle_refund(self, refund_id: str, answer: bool | None) -> ToolResult:
        """The person's answer, through the desk's Confirm/Cancel (the same act as a button)."""
        if answer is not None:
            result, _, _ = await self.desk.decide_refund(self.ctx, refund_id, yes=answer)
            return replace(result, note=wording.MCP_DECLINED) if answer is False and result.ok else result
        state = await customer.refund_state(self.deps, refund_id)
        return ToolResult(Code.AWAITING_CONFIRMATION, wording.MCP_NOT_ASKED, state)

    async def _settle_approval(self, ticket_id: int, answer: bool | None) -> ToolResult:
        if answer is True:
            return await desk.decide(self.deps, staff=self.ctx.actor, ticket_id=ticket_id, approve=True)
        return await desk.not_approved(
            self.deps, staff=self.ctx.actor, ticket_id=ticket_id, answer=answer, session_id=self.ctx.session_id
        )

    async def _refund_question(self, refund_id: str) -> str:
        prompt = await refund_prompt(self.deps.store, refund_id)
        return f"{prompt.text} {wording.confirm_how('mcp')}"

    async def _approval_question(self, ticket_id: int) -> str | None:
        waiting = await desk.awaiting_approval(self.deps, ticket_id)
        if waiting is None:
            return None  # nothing to approve: the state machine says why, without asking anyone
        order_id, amount = waiting
        return f"Approve the refund of {amount} for order {order_id} (ticket #{ticket_id})? It is sent at once."

    # --- what the client receives ----------------------------------------------------------------
    async def _present(self, result: ToolResult) -> types.CallToolResult:
        payload = result.for_model()
        customer_id = self.ctx.actor.customer_id
        log.info("mcp %s: %s", self.ctx.actor.ref, result.code.value)
        if self.ctx.actor.kind == "customer":
            del payload["code"]
            if not result.ok and not result.note:
                payload["note"] = wording.for_code(result.model_code)
            payload = await _sanitized(payload, self.deps.store, customer_id)
            payload |= await self._messages()
        return types.CallToolResult(content=[_text(payload)], structured_content=payload, is_error=not result.ok)

    async def _messages(self) -> dict[str, Any]:
        """What the support team wrote to this customer since the last result (MCP has no push of
        its own to the person: their client shows it with the next result)."""
        rows = await outbox.for_session(self.deps, self.ctx.session_id, undelivered=True)
        await outbox.delivered(self.deps, [r.id for r in rows])
        return {"messages_from_support": [r.text for r in rows]} if rows else {}


def _yes(answer: types.ElicitResult) -> bool:
    return answer.action == "accept" and (answer.content or {}).get("confirm") is True


def _text(payload: dict[str, Any]) -> types.TextContent:
    return types.TextContent(type="text", text=json.dumps(payload, default=str))


async def _sanitized(value: Any, store: Store, customer_id: str | None) -> Any:
    """Every string through the customer-facing guard; JSON structure kept."""
    if isinstance(value, str):
        return (await sanitize(value, store=store, customer_id=customer_id)).text
    if isinstance(value, dict):
        return {k: await _sanitized(v, store, customer_id) for k, v in value.items()}
    if isinstance(value, list):
        return [await _sanitized(v, store, customer_id) for v in value]
    return value


def build_server(deps: Deps, ctx: CallContext) -> Server[Any]:
    face = McpFace(deps, ctx)
    server: Server[Any] = Server(
        NAME,
        instructions="Customer-support tools bound to one verified identity. Refunds need the person's own "
        "confirmation, which this server asks for itself.",
        on_list_tools=face.list_tools,
        on_call_tool=face.call_tool,
    )
    # seals the 2026-07-28 requestState: a client can only echo back what we minted, for that very call
    ttl = deps.settings.refund_confirmation_ttl_minutes * 60.0
    server.middleware.append(RequestStateBoundary(RequestStateSecurity.ephemeral(ttl=ttl), default_audience=NAME))
    return server


# --- HTTP ---------------------------------------------------------------------------------------
class BearerGate:
    """401 for any HTTP request without `Authorization: Bearer <MCP_TOKEN>` (constant-time compare)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
            if not hmac.compare_digest(given, self.expected):
                response = JSONResponse({"error": "unauthorized"}, 401, {"WWW-Authenticate": "Bearer"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _serve_http(server: Server[Any], *, port: int, token: str) -> int:
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, port))
        sock.listen(128)  # connections wait in the backlog from now on, not refused while uvicorn starts
    except OSError as exc:
        sock.close()
        print(f"supportbot: cannot listen on {HOST}:{port}: {exc.strerror}", file=sys.stderr)
        return 2
    app = BearerGate(server.streamable_http_app(host=HOST), token)
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")
    print(f"supportbot mcp listening on http://{HOST}:{sock.getsockname()[1]}/mcp", file=sys.stderr, flush=True)
    await uvicorn.Server(config).serve(sockets=[sock])
    return 0


# --- start --------------------------------------------------------------------------------------
async def run_mcp(settings: Settings, *, as_email: str | None, staff: str | None, http: bool, port: int) -> int:
    token = settings.mcp_token.get_secret_value() if settings.mcp_token else ""
    if http and not token:
        print("supportbot: MCP_TOKEN is not set; `supportbot mcp --http` needs it (see .env.example)", file=sys.stderr)
        return 2
    store = Store.from_settings(settings)
    try:
        deps = await ready(store, settings)
        if staff is not None:
            if not staff.strip():
                print("supportbot: --staff needs a staff id", file=sys.stderr)
                return 2
            actor = Actor.staff(staff.strip())
        else:
            customer = await customer_by_email(deps, as_email or "")
            if customer is None:
                print(f"supportbot: no customer has the email {as_email!r}", file=sys.stderr)
                return 2
            actor = Actor.customer(customer.id, subject=f"mcp:{customer.email}")
        ctx = await open_session(deps, channel="mcp", actor=actor)
        server = build_server(deps, ctx)
        log.info("mcp session %s bound to %s", ctx.session_id, actor.ref)
        if http:
            return await _serve_http(server, port=port, token=token)
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())
        return 0
    finally:
        await store.dispose()
