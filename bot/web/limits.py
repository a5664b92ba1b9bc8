"""Bounded work for what a website visitor sends: how long a body may take to arrive, how large
and how deeply nested it may be, and how many requests an identity may make.

    read_body(request, limit=…, timeout_s=…)  the body, or BodyTooLarge / BodyTimeout
    parse_json(raw)                           the value, or BadJson (also for nesting past MAX_JSON_DEPTH)

Rate limits are fixed windows counted in the store (`bot.web.turns.hit`), one bucket per
identity and kind of request: requests that start work (a message, a Confirm or Cancel) share
RATE_LIMIT a minute; reading a turn's event stream, which a widget re-opens after every dropped
connection, has its own READ_RATE_LIMIT, so reconnects never use up an identity's messages.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Literal

from aiohttp import web

from bot.errors import BadJson, BodyTimeout, BodyTooLarge

MAX_JSON_DEPTH = 8  # a ChatRequest is one flat object; anything this deep is not one of ours
RATE_LIMIT, READ_RATE_LIMIT, RATE_WINDOW_S = 30, 120, 60  # requests per identity per window
Bucket = Literal["chat", "read"]
LIMITS: dict[Bucket, int] = {"chat": RATE_LIMIT, "read": READ_RATE_LIMIT}


def bucket_subject(subject: str, bucket: Bucket) -> str:
    """The rate-limit row of an identity for one bucket (messages keep the plain subject)."""
    return subject if bucket == "chat" else f"{subject}|{bucket}"


async def read_body(request: web.Request, *, limit: int, timeout_s: float) -> bytes:
    """At most `limit` bytes within `timeout_s` seconds, whatever the sender declares or does."""
    if (request.content_length or 0) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            while size <= limit:
                chunk = await request.content.read(limit + 1 - size)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
    except TimeoutError:
        raise BodyTimeout(timeout_s) from None
    if size > limit:
        raise BodyTooLarge(limit)
    return b"".join(chunks)


def too_deep(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether JSON text nests arrays or objects deeper than `limit` (strings skipped), in one pass."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    depth, in_string, escaped = 0, False, False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return False


def parse_json(raw: bytes) -> Any:
    """JSON whose nesting was checked first, so the parser never recurses deeply."""
    if too_deep(raw):
        raise BadJson(f"nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(raw or b"null")
    except (ValueError, RecursionError):
        raise BadJson("not JSON") from None
