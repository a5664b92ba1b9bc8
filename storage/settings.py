"""The one settings class, read from the environment and `.env`.

It lives in the bottom package so every layer reads the same object; each layer receives it
(or the values it needs) by injection rather than reading the environment itself.
Every field is documented in `.env.example`; a test keeps the two in step.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # --- store -------------------------------------------------------------------------------
    database_url: str = "sqlite+aiosqlite:///supportbot.db"
    db_pool_size: int = Field(default=5, ge=1)
    db_max_overflow: int = Field(default=5, ge=0)
    sqlite_busy_timeout_ms: int = Field(default=1000, ge=0, le=2500)

    # --- business rules ----------------------------------------------------------------------
    refund_limit: Decimal = Field(default=Decimal("150.00"), ge=0, decimal_places=2)
    return_window_days: int = Field(default=30, ge=0)
    refund_confirmation: bool = True
    refund_confirmation_ttl_minutes: int = Field(default=30, ge=1)

    # --- help center ------------------------------------------------------------------------
    help_center_url: str = "https://help.example.com"
    help_center_locale: str = Field(default="en", pattern=r"^[a-z]{2,3}$")

    # --- model -------------------------------------------------------------------------------
    model_provider: Literal["claude", "offline"] | None = None
    anthropic_api_key: SecretStr | None = None
    anthropic_model: str = "claude-sonnet-5-5"
    anthropic_timeout_s: float = Field(default=30.0, gt=0)
    anthropic_max_retries: int = Field(default=2, ge=0)
    anthropic_max_tokens: int = Field(default=1024, ge=64)
    max_model_calls_per_turn: int = Field(default=8, ge=1)
    session_token_budget: int = Field(default=200_000, ge=1000)
    history_token_budget: int = Field(default=12_000, ge=500)

    # --- Slack -------------------------------------------------------------------------------
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    support_staff_channel: str | None = None
    support_channels: Annotated[list[str], NoDecode] = Field(default_factory=list)
    support_mention_only: bool = False
    support_staff_user_ids: Annotated[list[str], NoDecode] = Field(default_factory=list)
    treat_internal_users_as_customers: bool = False
    staff_cache_seconds: int = Field(default=300, ge=0)
    sla_p1_minutes: int = Field(default=15, ge=1)
    sla_reannounce_minutes: int = Field(default=15, ge=1)

    # --- inbox and workers -------------------------------------------------------------------
    inbox_lease_seconds: float = Field(default=30.0, gt=0)
    inbox_max_attempts: int = Field(default=3, ge=1)
    inbox_poll_seconds: float = Field(default=0.5, gt=0)
    worker_concurrency: int = Field(default=8, ge=1)

    # --- other faces -------------------------------------------------------------------------
    chat_identity_secret: SecretStr | None = None
    mcp_token: SecretStr | None = None
    log_level: str = "INFO"
    # testing only: SIGKILL the process at a named point (before_model_call, after_post)
    fault_crash_at: str | None = None

    @field_validator("support_channels", "support_staff_user_ids", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("help_center_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @field_validator("slack_api_url")
    @classmethod
    def _trailing_slash(cls, value: str) -> str:
        return value if value.endswith("/") else value + "/"

    @property
    def refund_limit_cents(self) -> int:
        return int(self.refund_limit * 100)

    @property
    def resolved_model_provider(self) -> Literal["claude", "offline"]:
        if self.model_provider is not None:
            return self.model_provider
        return "claude" if self.anthropic_api_key else "offline"
