"""The Slack Web API client, built in one place: slack_sdk's retry handlers (429 and connection
errors), each retry counted on /metrics."""

from __future__ import annotations

from typing import Any

from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from storage import metrics
from storage.settings import Settings


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


HTTP_TIMEOUT_S = 10.0


def post_timeout(settings: Settings) -> float:
    """How long one posting call may take: never more than a third of a lease, so that a post the
    fence allowed ends before the lease it was allowed under can run out."""
    return min(HTTP_TIMEOUT_S, settings.inbox_lease_seconds / 3)


def make_client(settings: Settings, *, retries: bool = True) -> AsyncWebClient:
    """The client for every call; `retries=False` for posting messages, which retries in our own code
    so that each attempt is fenced by the lease it posts under (see bot.slack.delivery)."""
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    return AsyncWebClient(
        token=token,
        base_url=settings.slack_api_url,
        timeout=HTTP_TIMEOUT_S if retries else post_timeout(settings),  # type: ignore[arg-type]
        retry_handlers=[RateLimitRetry(max_retry_count=50), ConnectionRetry(max_retry_count=2)] if retries else [],
    )
