"""The sanitizer's second line behind the import's refusal: a credential shape never reaches a
customer, whatever put it in a reply (an article imported before the import refused them, a tool's
text, a model that read one somewhere)."""

from __future__ import annotations

import pytest

from storage.credentials import SHAPES, withhold
from tests.conftest import SARAH
from tests.linear import HOSTILE, _repeat, assert_linear
from tools.context import Deps
from tools.sanitizer import sanitize

BOT_TOKEN = "xoxb-1111111111-2222222222222-abcdefghijklmnopqrstuvwx"
SAID = [
    (f"The bot token is {BOT_TOKEN}.", BOT_TOKEN),
    ("Socket Mode uses xapp-1-A0123456789-1234567890123-abcdef0123456789abcdef.", "xapp-1-A0123456789"),
    (f"Our API key is sk-ant-api03-{'a' * 60}.", "sk-ant-api03"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----", "BEGIN RSA PRIVATE KEY"),
    ("Use AKIAIOSFODNN7EXAMPLE with the secret.", "AKIAIOSFODNN7EXAMPLE"),
    ("CHAT_IDENTITY_SECRET=6f1c2a9b8e7d4c3b2a1f0e9d", "6f1c2a9b8e7d4c3b2a1f0e9d"),
    ("DATABASE_URL=postgresql://bot:s3cr3tpass@db.internal/shop", "s3cr3tpass"),
]


@pytest.mark.parametrize(("said", "secret"), SAID)
async def test_credentials_are_withheld_from_replies(deps: Deps, said: str, secret: str) -> None:
    out = await sanitize(said, store=deps.store, customer_id=SARAH)
    assert secret not in out.text and "[withheld]" in out.text
    assert out.withheld and not out.replaced


async def test_words_about_passwords_stay(deps: Deps) -> None:
    said = "To reset your password: open Settings, then Security. Your token arrives by email."
    assert (await sanitize(said, store=deps.store, customer_id=SARAH)).text == said


@pytest.mark.parametrize("name", [*HOSTILE, "tokens", "secrets", "keys"])
def test_credential_shapes_are_linear(name: str) -> None:
    make = (
        HOSTILE.get(name)
        or {
            "tokens": _repeat("xoxb-1"),
            "secrets": _repeat("password=a1"),
            "keys": _repeat("-----BEGIN "),
        }[name]
    )
    assert_linear(lambda t: withhold(t), make, label=name, large=400_000)
    assert len(SHAPES) >= 10
