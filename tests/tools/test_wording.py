"""Customer and staff wording that depends on where it is shown."""

from __future__ import annotations

from typing import get_args

from tools import wording
from tools.codes import Code


def test_each_face_says_how_to_confirm_in_its_own_words() -> None:
    faces = get_args(wording.Face)
    assert set(wording.CONFIRM_HOW) == set(faces) == {"slack", "shell", "web", "mcp"}
    assert len({wording.confirm_how(f) for f in faces}) == len(faces)
    assert "button" not in wording.confirm_how("shell").lower() and "yes" in wording.confirm_how("shell")
    assert "Confirm refund" in wording.confirm_how("slack")  # the button's own label
    assert "Confirm button" in wording.confirm_how("web")


def test_staff_refund_status_says_no_such_order() -> None:
    text = wording.staff_refund_status_text(Code.ORDER_NOT_FOUND, [], order_id="ORD-9999")
    assert text == "No such order: ORD-9999." and "account" not in text
    assert wording.staff_refund_status_text(Code.OK, [], order_id="ORD-8842") == "No refunds for ORD-8842."
    row = {"order_id": "ORD-1", "item": "Kettle", "amount": "$5.00", "status": "pending_approval", "refund_id": "RF-1"}
    assert wording.staff_refund_status_text(Code.OK, [row], order_id=None) == (
        "ORD-1 (Kettle): $5.00, pending approval, refund RF-1"
    )
