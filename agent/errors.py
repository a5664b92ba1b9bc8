"""What can go wrong inside `agent` (refusals are verdicts and tool results, never exceptions):

AgentError
 ├── ModelError
 │    ├── ModelUnavailable        the model API failed after the SDK's retries, or timed out
 │    └── ModelNotConfigured      Claude chosen without ANTHROPIC_API_KEY
 ├── AgentLimit                   a bound of the loop was reached; the loop turns it into
 │    │                           `policy.for_failure(exc.reason)`
 │    ├── MaxModelCallsExceeded   MAX_MODEL_CALLS_PER_TURN model calls without an answer
 │    └── TokenBudgetExceeded     the session spent SESSION_TOKEN_BUDGET tokens
 └── EvalError
      ├── UnknownScenario         `supportbot eval --scenario` named a scenario that does not exist
      └── CorpusError             the real-text corpus folder cannot be read as τ2 data
           └── CorpusMissing      there is no corpus at that path
"""

from __future__ import annotations

from pathlib import Path


class AgentError(Exception):
    """Base of everything that went wrong inside `agent`."""


class ModelError(AgentError):
    """Base of model failures."""


class ModelUnavailable(ModelError):
    def __init__(self, cause: BaseException | str) -> None:
        self.cause = cause
        detail = cause if isinstance(cause, str) else type(cause).__name__
        super().__init__(f"model unavailable: {detail}")


class ModelNotConfigured(ModelError):
    def __init__(self) -> None:
        super().__init__(
            "ANTHROPIC_API_KEY is not set, so Claude cannot be used: set it (environment or .env), "
            "or use the offline rules model with --provider offline (or MODEL_PROVIDER=offline)"
        )


class AgentLimit(AgentError):
    """A bound of the loop was reached; the loop turns it into `for_failure(exc.reason)`."""

    reason = "turn_limit"


class MaxModelCallsExceeded(AgentLimit):
    reason = "turn_limit"

    def __init__(self, calls: int) -> None:
        self.calls = calls
        super().__init__(f"no answer after {calls} model calls")


class TokenBudgetExceeded(AgentLimit):
    reason = "token_budget"

    def __init__(self, used: int, budget: int) -> None:
        self.used, self.budget = used, budget
        super().__init__(f"the session used {used} of its {budget} tokens")


class EvalError(AgentError):
    """An eval asked for something it cannot run (a command-line user's mistake)."""


class UnknownScenario(EvalError, ValueError):
    def __init__(self, unknown: list[str], known: list[str]) -> None:
        self.unknown, self.known = unknown, known
        super().__init__(f"unknown scenario {', '.join(map(repr, unknown))}; the scenarios are: {', '.join(known)}")


class CorpusError(EvalError):
    """The corpus folder cannot be read as τ2 data."""


class CorpusMissing(CorpusError):
    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(
            f"no τ2 corpus at {path} (expected conversations/airline_*.json.gz there); "
            "pass --corpus with the folder that holds it"
        )
