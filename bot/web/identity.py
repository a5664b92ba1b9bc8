"""Who is calling the website chat API.

The host site vouches for its logged-in customer with `X-Customer-Token: EMAIL|EXPIRY|SIG` (SIG
= hex HMAC-SHA256 of `EMAIL|EXPIRY` under CHAT_IDENTITY_SECRET, EXPIRY a Unix time at most a day
ahead). Anything else is an anonymous visitor, `Actor.unverified`, known by an opaque random id
we issue (`X-Anonymous-Id`, sent back by the widget; only its hash is stored). An anonymous
visitor is also known by its client address, for limits an id cannot dodge (a new id costs
nothing): the TCP peer, or with TRUSTED_PROXY_HOPS = N proxies in front, the N-th address from
the right of X-Forwarded-For (each trusted proxy appends the address it received from; entries
further left were written by the client and are ignored). Only a hash of it is stored, of the
/64 for IPv6 (what one host usually holds).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
from dataclasses import dataclass
from typing import Literal

from aiohttp import web
from pydantic import BaseModel

from bot.host import Host
from desk.sessions import customer_by_email
from tools.context import Actor

TOKEN_HEADER, ANON_HEADER = "X-Customer-Token", "X-Anonymous-Id"
MAX_TOKEN_TTL_S = 24 * 3600  # "short-lived": a token valid for longer than this is refused
ANON_ID = re.compile(r"[A-Za-z0-9_-]{32,64}")
TokenVerdict = Literal["verified", "absent", "expired", "invalid", "unknown_customer", "disabled"]


class IdentityView(BaseModel):
    kind: Literal["customer", "anonymous"]
    token: TokenVerdict
    anonymous_id: str | None


def check_token(token: str, *, secret: bytes, now: int) -> tuple[TokenVerdict, str | None]:
    """`EMAIL|EXPIRY|SIG` → (verdict, email). The signature is compared in constant time first."""
    parts = token.rsplit("|", 2)
    if len(token) > 1024 or len(parts) != 3:
        return "invalid", None
    email, expiry, sig = parts
    expected = hmac.new(secret, f"{email}|{expiry}".encode(), hashlib.sha256).hexdigest().encode()
    if not hmac.compare_digest(expected, sig.strip().lower().encode()):
        return "invalid", None
    if not re.fullmatch(r"\d{1,12}", expiry, re.ASCII) or int(expiry) > now + MAX_TOKEN_TTL_S:
        return "invalid", None
    if int(expiry) <= now:
        return "expired", None
    return "verified", email


@dataclass(frozen=True, slots=True)
class Identity:
    subject: str  # what sessions are bound to (sessions.subject)
    actor: Actor
    token: TokenVerdict
    anonymous_id: str | None = None
    client: str | None = None  # an anonymous visitor's client address, hashed (its per-address limits)

    def view(self) -> IdentityView:
        kind: Literal["customer", "anonymous"] = "customer" if self.actor.kind == "customer" else "anonymous"
        return IdentityView(kind=kind, token=self.token, anonymous_id=self.anonymous_id)

    def headers(self) -> dict[str, str]:
        return {ANON_HEADER: self.anonymous_id} if self.anonymous_id else {}


def client_address(request: web.Request, *, trusted_hops: int) -> str:
    """Who connected, seen through `trusted_hops` proxies (the peer when there are fewer entries)."""
    peer = request.remote or "unknown"
    if trusted_hops <= 0:
        return peer
    forwarded = [p.strip() for h in request.headers.getall("X-Forwarded-For", []) for p in h.split(",")]
    forwarded = [p for p in forwarded if p]
    return forwarded[-trusted_hops] if len(forwarded) >= trusted_hops else peer


def client_key(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        name = address[:100]
    else:
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        name = str(ipaddress.ip_network(f"{ip}/64", strict=False)) if ip.version == 6 else str(ip)
    return hashlib.sha256(b"client:" + name.encode()).hexdigest()[:32]


async def identify(rt: Host, request: web.Request) -> Identity:
    raw = request.headers.get(TOKEN_HEADER)
    verdict: TokenVerdict = "absent"
    if raw is not None:
        secret = rt.settings.chat_identity_secret.get_secret_value() if rt.settings.chat_identity_secret else ""
        if not secret:
            verdict = "disabled"
        else:
            verdict, email = check_token(raw, secret=secret.encode(), now=int(rt.clock.now().timestamp()))
            if verdict == "verified" and email:
                customer = await customer_by_email(rt.deps, email)
                if customer is not None:
                    subject = f"web:customer:{customer.id}"
                    return Identity(subject, Actor.customer(customer.id, subject=subject), verdict)
                verdict = "unknown_customer"
    anon = request.headers.get(ANON_HEADER, "")
    if not ANON_ID.fullmatch(anon):
        anon = secrets.token_urlsafe(32)
    subject = "web:anon:" + hashlib.sha256(anon.encode()).hexdigest()[:40]
    client = client_key(client_address(request, trusted_hops=rt.settings.trusted_proxy_hops))
    return Identity(subject, Actor.unverified(subject), verdict, anon, client)
