"""Re-exported for the tests: the fake lives in the package because `supportbot bench` uses it."""

from bot.bench.fake_slack import BOT_USER, DEFAULT_LIMITS, HOME_TEAM, Bucket, Call, FakeSlack

__all__ = ["BOT_USER", "DEFAULT_LIMITS", "HOME_TEAM", "Bucket", "Call", "FakeSlack"]
