"""The seam through which money leaves: `PaymentGateway.refund(order, amount_cents, idempotency_key)`.

The idempotency key is the refund id. A gateway must answer a repeated key with its first result
and move no money the second time; that is what makes crash recovery safe (a refund left
`processing` is simply sent again). The default gateway records payouts in our own store.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from storage.engine import Store
from storage.models import Order, Payout
from storage.types import Clock


@dataclass(frozen=True, slots=True)
class PayoutResult:
    reference: str
    amount_cents: int


class PaymentGateway(Protocol):
    async def refund(self, order: Order, amount_cents: int, idempotency_key: str) -> PayoutResult: ...


class StoreGateway:
    """Records each payout once per idempotency key in `payouts`; a repeat returns the first."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def refund(self, order: Order, amount_cents: int, idempotency_key: str) -> PayoutResult:
        insert = postgresql.insert if self._store.dialect == "postgresql" else sqlite.insert
        stmt = (
            insert(Payout)
            .values(
                idempotency_key=idempotency_key,
                order_id=order.id,
                amount_cents=amount_cents,
                currency=order.currency,
                reference=f"PO-{uuid.uuid4().hex[:16]}",
                created_at=self._clock.now(),
            )
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
        )
        async with self._store.write() as s:
            await s.execute(stmt)
            payout = (await s.scalars(select(Payout).where(Payout.idempotency_key == idempotency_key))).one()
        return PayoutResult(reference=payout.reference, amount_cents=payout.amount_cents)
