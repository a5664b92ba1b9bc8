"""Every state machine's states and the moves allowed between them, in one file.

A status column holds one of these values; a status changes only through `move` (or a conditional
UPDATE built from `Machine.allows`), so a reader finds every state and every move here. Literals
of these values appear nowhere else but migrations.

    RefundStatus    awaiting_confirmation ─confirm─▶ processing ─gateway─▶ processed | failed
                    awaiting_confirmation ─cancel / expire─▶ cancelled | expired
                    pending_approval ─approve─▶ processing;  ─deny─▶ denied
                    failed ─retry─▶ processing
    TicketStatus    open ⇄ claimed ─▶ resolved;  open ─▶ resolved
    InboxStatus     pending ⇄ working ─▶ done | dead | skipped
    OutboxStatus    pending ⇄ posting ─▶ posted | skipped
    WebTurnStatus   queued ⇄ running ─▶ done | failed
    OrderStatus     the shop's order life cycle, moved by order changes

Exceptions:

    StateError                     a move the machine does not allow (a bug, never a race:
                                   races are conditional UPDATEs that find nothing to move)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Generic, TypeVar

S = TypeVar("S", bound=StrEnum)


class StateError(Exception):
    """A move the state machine does not allow."""

    def __init__(self, machine: str, frm: str, to: str) -> None:
        self.machine, self.frm, self.to = machine, frm, to
        super().__init__(f"{machine}: {frm} -> {to} is not an allowed move")


class RefundStatus(StrEnum):
    AWAITING_CONFIRMATION = "awaiting_confirmation"
    PENDING_APPROVAL = "pending_approval"
    PROCESSING = "processing"
    PROCESSED = "processed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    DENIED = "denied"


class TicketStatus(StrEnum):
    OPEN = "open"
    CLAIMED = "claimed"
    RESOLVED = "resolved"


class InboxStatus(StrEnum):
    PENDING = "pending"
    WORKING = "working"
    DONE = "done"
    DEAD = "dead"
    SKIPPED = "skipped"


class OutboxStatus(StrEnum):
    PENDING = "pending"
    POSTING = "posting"
    POSTED = "posted"
    SKIPPED = "skipped"


class WebTurnStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class OrderStatus(StrEnum):
    PENDING = "pending"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"


class Machine(Generic[S]):
    """One state machine: its states and its allowed moves."""

    def __init__(self, states: type[S], moves: Mapping[S, Iterable[S]]) -> None:
        self.states = states
        self.moves = {frm: frozenset(to) for frm, to in moves.items()}

    def allows(self, frm: S | str, to: S | str) -> bool:
        return self.states(to) in self.moves.get(self.states(frm), frozenset())

    def check(self, frm: S | str, to: S | str) -> S:
        """`to`, if the machine allows the move; raises StateError otherwise."""
        if not self.allows(frm, to):
            raise StateError(self.states.__name__, str(frm), str(to))
        return self.states(to)

    def sources(self, to: S | str) -> tuple[S, ...]:
        """Every state from which `to` may be reached: the WHERE of a conditional UPDATE."""
        return tuple(frm for frm, tos in self.moves.items() if self.states(to) in tos)


R, T, W = RefundStatus, TicketStatus, WebTurnStatus

REFUNDS = Machine(
    RefundStatus,
    {
        R.AWAITING_CONFIRMATION: {R.PROCESSING, R.PENDING_APPROVAL, R.CANCELLED, R.EXPIRED},
        R.PENDING_APPROVAL: {R.PROCESSING, R.DENIED, R.CANCELLED},
        R.PROCESSING: {R.PROCESSED, R.FAILED},
        R.FAILED: {R.PROCESSING},
    },
)
TICKETS = Machine(
    TicketStatus,
    {T.OPEN: {T.CLAIMED, T.RESOLVED}, T.CLAIMED: {T.OPEN, T.CLAIMED, T.RESOLVED}},
)
INBOX = Machine(
    InboxStatus,
    {
        InboxStatus.PENDING: {InboxStatus.WORKING, InboxStatus.SKIPPED, InboxStatus.DEAD},
        InboxStatus.WORKING: {InboxStatus.PENDING, InboxStatus.DONE, InboxStatus.DEAD, InboxStatus.SKIPPED},
        InboxStatus.DEAD: {InboxStatus.PENDING},
    },
)
OUTBOX = Machine(
    OutboxStatus,
    {
        OutboxStatus.PENDING: {OutboxStatus.POSTING, OutboxStatus.POSTED, OutboxStatus.SKIPPED},
        OutboxStatus.POSTING: {OutboxStatus.PENDING, OutboxStatus.POSTED, OutboxStatus.SKIPPED},
    },
)
WEB_TURNS = Machine(
    WebTurnStatus,
    {W.QUEUED: {W.RUNNING, W.FAILED}, W.RUNNING: {W.QUEUED, W.DONE, W.FAILED}},
)

# At most one refund per order in these states (a partial unique index, enforced by the database).
LIVE_REFUNDS = (R.AWAITING_CONFIRMATION, R.PENDING_APPROVAL, R.PROCESSING, R.PROCESSED)
UNFINISHED_INBOX = (InboxStatus.PENDING, InboxStatus.WORKING)
UNDELIVERED_OUTBOX = (OutboxStatus.PENDING, OutboxStatus.POSTING)
UNFINISHED_WEB_TURNS = (W.QUEUED, W.RUNNING)
