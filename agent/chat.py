"""A conversation for text faces (the shell, the eval, the web API): the agent, plus the two
things a customer can type that are not for the model: "yes"/"no" to a refund waiting for
confirmation, and `/refund-status [ORDER]`.

Pending confirmations are read from the store, so a restarted face picks up where it was.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator

from sqlalchemy import select

from agent import history
from agent.events import Event, Reply
from agent.loop import Agent
from agent.model import ClaudeModel, Model, make_client
from agent.offline import OfflineModel
from agent.scripted import HostileModel
from storage.models import Refund
from storage.settings import Settings
from storage.types import format_cents
from tools import refunds, wording
from tools.context import CallContext
from tools.get_refund_status import refund_status

log = logging.getLogger(__name__)
PROVIDERS = ("claude", "offline", "hostile")


def build_model(settings: Settings, provider: str | None = None) -> Model:
    """The model for a provider name (default: MODEL_PROVIDER, else claude with a key, else offline)."""
    provider = provider or settings.resolved_model_provider
    log.info("model provider: %s", provider)
    if provider == "claude":
        return ClaudeModel(make_client(settings), model=settings.anthropic_model)
    if provider == "offline":
        return OfflineModel()
    if provider == "hostile":
        return HostileModel()
    raise ValueError(f"unknown model provider {provider!r}; choose one of {', '.join(PROVIDERS)}")


YES = {"yes", "y", "yep", "yeah", "yup", "confirm", "ok", "okay", "sure", "go ahead", "please do", "do it"}
YES |= {"sí", "si", "claro", "vale", "ja", "gerne", "jawohl"}  # Spanish and German
NO = {"no", "n", "nope", "cancel", "don't", "do not", "never mind", "nevermind", "stop", "nein", "no gracias"}
FILLER = re.compile(r"\b(please|thanks|thank you|go ahead|do it)\b")


def yes_or_no(text: str) -> bool | None:
    """A bare yes or no (with at most a please/thanks), as an answer to "Shall I go ahead?"."""
    words = re.sub(r"[^\w\s']", " ", text.lower()).strip()
    core = re.sub(r"\s+", " ", FILLER.sub(" ", words)).strip()
    for candidate in (words, core):
        if candidate in YES:
            return True
        if candidate in NO:
            return False
    return None


class Conversation:
    def __init__(self, agent: Agent, ctx: CallContext) -> None:
        self.agent = agent
        self.ctx = ctx
        self.deps = agent.deps

    async def pending_refund(self) -> Refund | None:
        async with self.deps.store.read() as s:
            return (
                await s.scalars(
                    select(Refund)
                    .where(Refund.session_id == self.ctx.session_id, Refund.status == "awaiting_confirmation")
                    .order_by(Refund.created_at.desc())
                    .limit(1)
                )
            ).one_or_none()

    async def refund_status(self, order_id: str | None) -> str:
        result = await refund_status(self.deps, self.ctx, order_id or None)
        return wording.refund_status_text(result.code, list(result.data.get("refunds", [])))

    async def answer(self, refund: Refund, yes: bool) -> str:
        amount = format_cents(refund.amount_cents, refund.currency)
        if yes:
            result = await refunds.confirm(
                self.deps, refund_id=refund.id, actor=self.ctx.actor, session_id=self.ctx.session_id
            )
            text = wording.after_confirmation(result.code, order_id=refund.order_id, amount=amount)
        else:
            result = await refunds.cancel(
                self.deps, refund_id=refund.id, actor=self.ctx.actor, session_id=self.ctx.session_id
            )
            text = wording.after_cancel(result.code, order_id=refund.order_id)
        for role, said in (("user", "yes" if yes else "no"), ("assistant", text)):
            await history.append(
                self.deps.store,
                self.deps.clock,
                session_id=self.ctx.session_id,
                role=role,
                content=[{"type": "text", "text": said}],
                customer_text=role == "user",
            )
        await self.agent.settle(self.ctx, last_reply=text)
        return text

    async def say(self, text: str) -> AsyncIterator[Event]:
        stripped = text.strip()
        if stripped.startswith("/refund-status"):
            arg = stripped.removeprefix("/refund-status").strip()
            yield Reply(await self.refund_status(arg.split()[0] if arg else None))
            return
        answer = yes_or_no(stripped)
        if answer is not None:
            refund = await self.pending_refund()
            if refund is not None:
                yield Reply(await self.answer(refund, answer))
                return
        async for event in self.agent.run_turn(self.ctx, text):
            yield event
