"""Which model answers: Claude, the offline rules model, or the hostile test model, by name."""

from __future__ import annotations

import logging

from agent.errors import ModelNotConfigured
from agent.model import ClaudeModel, Model, make_client
from agent.offline import OfflineModel
from agent.scripted import HostileModel
from storage.settings import Settings

log = logging.getLogger(__name__)
PROVIDERS = ("claude", "offline", "hostile")


def check_provider(settings: Settings, provider: str | None = None) -> None:
    """Refuse a model that cannot work (Claude without a key) before a face opens anything."""
    if (provider or settings.resolved_model_provider) == "claude" and not settings.anthropic_api_key:
        raise ModelNotConfigured()


def build_model(settings: Settings, provider: str | None = None) -> Model:
    """The model for a provider name (default: MODEL_PROVIDER, else claude with a key, else offline)."""
    provider = provider or settings.resolved_model_provider
    log.info("model provider: %s", provider)
    if provider == "claude":
        return ClaudeModel(make_client(settings), model=settings.anthropic_model)
    if provider == "offline":
        return OfflineModel()
    if provider == "hostile":
        return HostileModel()
    raise ValueError(f"unknown model provider {provider!r}; choose one of {', '.join(PROVIDERS)}")


async def close_model(model: Model) -> None:
    """Release what a model holds (Claude: its HTTP connections); a model with nothing open has no
    `aclose`."""
    aclose = getattr(model, "aclose", None)
    if aclose is not None:
        await aclose()
