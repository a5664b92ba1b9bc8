"""The model seam: a small `Model` protocol, and the Claude adapter over `anthropic.AsyncAnthropic`.

Requests and replies use the Messages API's own shapes (plain dicts of content blocks), so the
offline and scripted models speak exactly what Claude speaks.

Exceptions:

    ModelError
     ├── ModelUnavailable   the API failed after the SDK's own retries (429, 529, 5xx, timeout,
     │                      connection) or refused the request; the loop apologises and escalates P2
     └── ModelNotConfigured Claude was chosen but ANTHROPIC_API_KEY is not set (raised before any
                            session starts; the command line says how to use the offline model)
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from agent.errors import ModelNotConfigured, ModelUnavailable
from agent.events import Usage
from storage.settings import Settings

if TYPE_CHECKING:  # the SDK takes seconds to import: only a process that talks to Claude loads it (make_client)
    import anthropic

log = logging.getLogger(__name__)

CACHE = {"type": "ephemeral"}
# The most text of one model reply we process, in UTF-8 bytes. max_tokens bounds what a model
# should send; this bounds what we do with whatever arrives (a 2 MB reply froze the process).
MAX_REPLY_BYTES = 64 * 1024


def cap_text(text: str, limit: int = MAX_REPLY_BYTES) -> str:
    """`text` cut to at most `limit` UTF-8 bytes, on a character boundary."""
    if len(text) * 4 <= limit:
        return text
    raw = text.encode("utf-8")
    return text if len(raw) <= limit else raw[:limit].decode("utf-8", errors="ignore")


def capped(content: list[dict[str, Any]], limit: int = MAX_REPLY_BYTES) -> list[dict[str, Any]]:
    """Content blocks whose text, all blocks together, fits in `limit` bytes (tool calls kept)."""
    out: list[dict[str, Any]] = []
    left = limit
    for block in content:
        if block.get("type") == "text":
            text = cap_text(str(block.get("text") or ""), left)
            left -= len(text.encode("utf-8"))
            if len(text) < len(str(block.get("text") or "")):
                log.warning("model reply text cut to %d bytes", limit)
            block = {**block, "text": text}
        out.append(block)
    return out


@dataclass(frozen=True, slots=True)
class ModelRequest:
    system: str
    tools: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    max_tokens: int


@dataclass(frozen=True, slots=True)
class ModelReply:
    content: list[dict[str, Any]]  # text and tool_use blocks
    stop_reason: str | None
    usage: Usage = field(default_factory=Usage)
    model: str = ""

    @property
    def text(self) -> str:
        return "\n".join(b["text"] for b in self.content if b.get("type") == "text" and b.get("text")).strip()

    @property
    def tool_uses(self) -> list[dict[str, Any]]:
        return [b for b in self.content if b.get("type") == "tool_use"]


class Model(Protocol):
    name: str

    async def complete(self, request: ModelRequest) -> ModelReply: ...


def cached_params(request: ModelRequest) -> dict[str, Any]:
    """The request as sent, with two cache breakpoints.

    1. On the system block: tools then system form a prefix byte-identical for every request of
       every session (the system prompt depends on settings only).
    2. On the newest message's last block: each tool round re-reads the conversation so far.
    """
    messages = copy.deepcopy(request.messages)
    if messages:
        last = messages[-1]
        if isinstance(last["content"], str):
            last["content"] = [{"type": "text", "text": last["content"]}]
        if last["content"]:
            last["content"][-1]["cache_control"] = dict(CACHE)
    return {
        "max_tokens": request.max_tokens,
        "system": [{"type": "text", "text": request.system, "cache_control": dict(CACHE)}],
        "tools": request.tools,
        "messages": messages,
    }


def _block(block: Any) -> dict[str, Any] | None:
    if block.type == "text":
        return {"type": "text", "text": block.text}
    if block.type == "tool_use":
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    return None  # thinking and server-tool blocks are not part of our protocol


class ClaudeModel:
    """Claude through an injected `AsyncAnthropic` (its timeout and retries set by `make_client`)."""

    def __init__(self, client: anthropic.AsyncAnthropic, *, model: str) -> None:
        self.client = client
        self.name = model

    async def complete(self, request: ModelRequest) -> ModelReply:
        import anthropic  # loaded already with the client (make_client): a dictionary lookup

        try:
            msg = await self.client.messages.create(model=self.name, **cached_params(request))
        except anthropic.APIError as exc:  # status errors, timeouts and connection errors, after retries
            log.warning("model call failed after retries: %s", type(exc).__name__)
            raise ModelUnavailable(exc) from exc
        u = msg.usage
        usage = Usage(
            input_tokens=u.input_tokens,
            cache_read_tokens=u.cache_read_input_tokens or 0,
            cache_write_tokens=u.cache_creation_input_tokens or 0,
            output_tokens=u.output_tokens,
        )
        content = capped([b for b in (_block(x) for x in msg.content) if b is not None])
        return ModelReply(content=content, stop_reason=msg.stop_reason, usage=usage, model=str(msg.model))

    async def aclose(self) -> None:
        await self.client.close()


def make_client(settings: Settings) -> anthropic.AsyncAnthropic:
    """The one place an Anthropic client is built. ANTHROPIC_BASE_URL is read by the SDK itself.
    Its HTTP goes through the SDK's aiohttp transport (`DefaultAioHttpClient`): about a millisecond
    of CPU less a call than its default httpx stack, and the process already runs aiohttp. Whoever
    builds one closes it (`close_model`)."""
    key = settings.anthropic_api_key.get_secret_value() if settings.anthropic_api_key else None
    if not key:
        raise ModelNotConfigured()
    import anthropic

    return anthropic.AsyncAnthropic(
        api_key=key,
        timeout=settings.anthropic_timeout_s,
        max_retries=settings.anthropic_max_retries,
        http_client=anthropic.DefaultAioHttpClient(timeout=settings.anthropic_timeout_s),
    )
