"""Re-exported for the tests: the fake lives in the package because `supportbot bench` uses it."""

from bot.bench.fake_anthropic import FakeMessagesAPI, segments, tokens

__all__ = ["FakeMessagesAPI", "segments", "tokens"]
