"""The Bolt app, built in one place: the Web API client (with slack_sdk's retry handlers), the
app itself, and every listener group registered explicitly."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot import listeners, metrics
from storage.settings import Settings

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = logging.getLogger(__name__)


class _Counted:
    """Counts each retry a slack_sdk retry handler grants, by reason, on /metrics."""

    reason = ""

    async def prepare_for_next_attempt_async(self, **kwargs: Any) -> None:
        metrics.SLACK_RETRIES.labels(self.reason).inc()
        await super().prepare_for_next_attempt_async(**kwargs)  # type: ignore[misc]


class RateLimitRetry(_Counted, AsyncRateLimitErrorRetryHandler):
    """429: wait Retry-After, then try again (Slack did not process the call)."""

    reason = "rate_limited"


class ConnectionRetry(_Counted, AsyncConnectionErrorRetryHandler):
    reason = "connection"


def make_client(settings: Settings) -> AsyncWebClient:
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    return AsyncWebClient(
        token=token,
        base_url=settings.slack_api_url,
        timeout=10,
        retry_handlers=[RateLimitRetry(max_retry_count=50), ConnectionRetry(max_retry_count=2)],
    )


def build_app(rt: Runtime) -> AsyncApp:
    secret = rt.settings.slack_signing_secret.get_secret_value() if rt.settings.slack_signing_secret else None
    # process_before_response=False: Slack gets its answer as soon as a listener calls ack(); every
    # listener commits its effect (an inbox row, a refund confirmation, a claim) before that call.
    app = AsyncApp(client=rt.client, signing_secret=secret, process_before_response=False, name="supportbot")
    listeners.register(app, rt)
    return app
