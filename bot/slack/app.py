"""The Bolt app, built in one place, with every listener group registered explicitly."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.slack import listeners
from bot.slack.runtime import Runtime


def build_app(rt: Runtime) -> AsyncApp:
    secret = rt.settings.slack_signing_secret.get_secret_value() if rt.settings.slack_signing_secret else None
    # process_before_response=False: Slack gets its answer as soon as a listener calls ack(); every
    # listener commits its effect (an inbox row, a refund confirmation, a claim) before that call.
    app = AsyncApp(client=rt.client, signing_secret=secret, process_before_response=False, name="supportbot")
    listeners.register(app, rt)
    return app
