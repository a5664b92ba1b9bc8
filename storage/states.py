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
    OrderStatus     pending ─▶ processed ─▶ shipped ─▶ delivered (the shop's own moves)
                    pending ─cancel─▶ cancelled;  pending ─modify items─▶ items_modified (once: then
                    locked for item changes and cancelling)
                    delivered ─return─▶ return_requested;  delivered ─exchange─▶ exchange_requested
    OrderChangeStatus  awaiting_confirmation ─confirm─▶ applied | pending_approval (over the limit)
                    awaiting_confirmation ─cancel / expire / superseded─▶ cancelled | expired
                    awaiting_confirmation ─the rules no longer allow it─▶ refused
                    pending_approval ─approve─▶ applied;  ─deny─▶ denied;  ─cancel─▶ cancelled

Exceptions:

    StateError                     a move the machine does not allow (a bug, never a race:
                                   races are conditional UPDATEs that find nothing to move)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Generic, TypeVar

from storage.errors import StateError

S = TypeVar("S", bound=StrEnum)


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
    PROCESSED = "processed"  # prepared for shipping: too late to change or cancel
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"
    ITEMS_MODIFIED = "items_modified"  # still pending, but its items were changed once
    RETURN_REQUESTED = "return_requested"
    EXCHANGE_REQUESTED = "exchange_requested"


class OrderChangeStatus(StrEnum):
    AWAITING_CONFIRMATION = "awaiting_confirmation"
    PENDING_APPROVAL = "pending_approval"
    APPLIED = "applied"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    REFUSED = "refused"
    DENIED = "denied"


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


R, T, W, OS, C = RefundStatus, TicketStatus, WebTurnStatus, OrderStatus, OrderChangeStatus

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

ORDERS = Machine(
    OrderStatus,
    {
        OS.PENDING: {OS.PROCESSED, OS.SHIPPED, OS.CANCELLED, OS.ITEMS_MODIFIED},
        OS.ITEMS_MODIFIED: {OS.PROCESSED, OS.SHIPPED},
        OS.PROCESSED: {OS.SHIPPED, OS.DELIVERED},
        OS.SHIPPED: {OS.DELIVERED},
        OS.DELIVERED: {OS.RETURN_REQUESTED, OS.EXCHANGE_REQUESTED},
    },
)
ORDER_CHANGES = Machine(
    OrderChangeStatus,
    {
        C.AWAITING_CONFIRMATION: {C.APPLIED, C.PENDING_APPROVAL, C.CANCELLED, C.EXPIRED, C.REFUSED},
        C.PENDING_APPROVAL: {C.APPLIED, C.DENIED, C.CANCELLED, C.REFUSED},
    },
)

# A refund that has been or is being paid, or waits to be (what the claims check calls live).
LIVE_REFUNDS = (R.AWAITING_CONFIRMATION, R.PENDING_APPROVAL, R.PROCESSING, R.PROCESSED)
# At most one refund per order in these states (a partial unique index): an order's next refund,
# of what remains, is asked for once the last one is paid or has ended.
OPEN_REFUNDS = (R.AWAITING_CONFIRMATION, R.PENDING_APPROVAL, R.PROCESSING)
# Refunds whose money is committed: counted in the order's refunded total and its payment history.
COMMITTED_REFUNDS = (R.PROCESSING, R.PROCESSED, R.FAILED)
# At most one change of a kind per order (or customer) in these states (a partial unique index).
OPEN_CHANGES = (C.AWAITING_CONFIRMATION, C.PENDING_APPROVAL)
# The statuses in which an order still counts as pending: its address and payment may change.
PENDING_ORDERS = (OS.PENDING, OS.ITEMS_MODIFIED)
# Delivered, as far as the return window is concerned: these orders have a delivery date.
DELIVERED_ORDERS = (OS.DELIVERED, OS.RETURN_REQUESTED, OS.EXCHANGE_REQUESTED)
UNFINISHED_INBOX = (InboxStatus.PENDING, InboxStatus.WORKING)
UNDELIVERED_OUTBOX = (OutboxStatus.PENDING, OutboxStatus.POSTING)
UNFINISHED_WEB_TURNS = (W.QUEUED, W.RUNNING)
