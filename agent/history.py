"""Conversation history in the store, and what of it is sent to the model.

Every message is persisted as it happens, so a restart loses nothing. What is sent is trimmed to
a token budget by a local estimate, cutting only at the customer's own messages, so a `tool_use`
is never separated from its `tool_result`.
"""

from __future__ import annotations

from typing import Any

from storage.engine import Store
from storage.models import Message
from storage.types import Clock, estimate_tokens


async def append(
    store: Store,
    clock: Clock,
    *,
    session_id: str,
    role: str,
    content: list[dict[str, Any]],
    customer_text: bool = False,
) -> Message:
    msg = Message(
        session_id=session_id,
        role=role,
        content=content,
        is_customer_text=customer_text,
        tokens_est=estimate_tokens(content),
        created_at=clock.now(),
    )
    async with store.write() as s:
        s.add(msg)
    return msg


def trim(rows: list[Message], budget: int) -> list[Message]:
    """The newest messages within `budget` tokens, starting at a customer message.

    The newest customer message and everything after it is always kept, even over budget.
    """
    boundaries = [i for i, r in enumerate(rows) if r.is_customer_text]
    if not boundaries:
        return rows
    keep_from = boundaries[-1]
    total = sum(r.tokens_est for r in rows[keep_from:])
    for start in reversed(boundaries[:-1]):
        cost = sum(r.tokens_est for r in rows[start:keep_from])
        if total + cost > budget:
            break
        total += cost
        keep_from = start
    return rows[keep_from:]


def to_messages(rows: list[Message]) -> list[dict[str, Any]]:
    """API messages: consecutive same-role rows merged, dangling tool_use/tool_result pairs dropped.

    A crash between persisting a `tool_use` and its results would otherwise leave a history the
    API refuses; we drop the half pair instead.
    """
    merged: list[dict[str, Any]] = []
    for r in rows:
        blocks = [dict(b) for b in r.content]
        if merged and merged[-1]["role"] == r.role:
            merged[-1]["content"].extend(blocks)
        else:
            merged.append({"role": r.role, "content": blocks})
    for i, msg in enumerate(merged):
        if msg["role"] != "assistant":
            continue
        nxt = merged[i + 1] if i + 1 < len(merged) else None
        answered = {b.get("tool_use_id") for b in (nxt["content"] if nxt else []) if b.get("type") == "tool_result"}
        msg["content"] = [b for b in msg["content"] if b.get("type") != "tool_use" or b.get("id") in answered]
    for i, msg in enumerate(merged):
        if msg["role"] != "user":
            continue
        prev = merged[i - 1] if i > 0 else None
        asked = {b.get("id") for b in (prev["content"] if prev else []) if b.get("type") == "tool_use"}
        msg["content"] = [b for b in msg["content"] if b.get("type") != "tool_result" or b.get("tool_use_id") in asked]
    out: list[dict[str, Any]] = []
    for m in merged:
        if not m["content"]:
            continue
        if out and out[-1]["role"] == m["role"]:
            out[-1]["content"].extend(m["content"])
        else:
            out.append(m)
    while out and out[0]["role"] != "user":
        out.pop(0)
    return out
