"""Re-exported for the tests: the fake lives in the package because `supportbot bench` uses it."""

from bot.fakes.anthropic import FakeMessagesAPI, segments, tokens

__all__ = ["FakeMessagesAPI", "segments", "tokens"]
