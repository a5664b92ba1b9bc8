"""Repair before replacing: a reply the store contradicts goes back to the model once.

The guard (agent.policy.guard) says which sentences the store contradicts and what it holds
instead. `guard_or_repair` asks the model once more, with the request it answered, its reply and
a note naming each contradicted sentence and the fact; the rewrite is sent if it passes the guard
in turn. Otherwise (the model fails, asks for a tool, or writes another contradiction) the
customer gets the guard's own answer, written by code from the store in their language. Kept out
of the loop so that it is one call at the loop's one reply path: it takes the request, a way to
ask the model, and the guard to check with, and returns what to send.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from agent.errors import ModelError
from agent.model import ModelReply, ModelRequest
from agent.policy import Guarded
from agent.prompts import repair_note

log = logging.getLogger(__name__)

Ask = Callable[[ModelRequest], Awaitable[ModelReply]]
Check = Callable[[str], Awaitable[Guarded]]
ANSWERED = ("end_turn", "stop_sequence", "max_tokens")


@dataclass(frozen=True, slots=True)
class Repaired:
    first: Guarded  # the guard's verdict on what the model wrote (what is logged and audited)
    out: Guarded  # what the customer gets
    asked: bool = False  # the model was asked once more
    rewritten: bool = False  # and its rewrite is what is sent


def retry_request(request: ModelRequest, text: str, guarded: Guarded) -> ModelRequest:
    """The request the model answered, its reply, and the note naming what the store contradicts."""
    messages = [
        *request.messages,
        {"role": "assistant", "content": [{"type": "text", "text": text}]},
        {"role": "user", "content": [{"type": "text", "text": repair_note(list(guarded.corrections))}]},
    ]
    return ModelRequest(system=request.system, tools=request.tools, messages=messages, max_tokens=request.max_tokens)


async def guard_or_repair(text: str, *, check: Check, ask: Ask, request: ModelRequest | None) -> Repaired:
    """The guard's verdict on `text`; when the store contradicts it, one rewrite by the model."""
    out = await check(text)
    if not out.contradicted or not out.corrections or request is None:
        return Repaired(out, out)
    try:
        reply = await ask(retry_request(request, text, out))
    except ModelError as exc:
        log.warning("the model could not rewrite a contradicted reply: %s", exc)
        return Repaired(out, out, asked=True)
    if reply.stop_reason not in ANSWERED or reply.tool_uses or not reply.text:
        return Repaired(out, out, asked=True)
    again = await check(reply.text)
    if again.reason not in (None, "tool_text_removed"):
        return Repaired(out, out, asked=True)
    return Repaired(out, again, asked=True, rewritten=True)
