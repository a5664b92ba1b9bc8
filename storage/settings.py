"""The one settings class, read from the environment and `.env`.

It lives in the bottom package so every layer reads the same object; each layer receives it
(or the values it needs) by injection rather than reading the environment itself.
Every field is documented in `.env.example`; a test keeps the two in step.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from storage.dburl import check_url

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
HOST = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?){0,10}", re.ASCII)
ORIGIN = re.compile(r"https?://(?:[a-z0-9-]+(?:\.[a-z0-9-]+)*|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?", re.ASCII)


class Settings(BaseSettings):
    # an empty value means "not set" (a copied .env.example is all defaults)
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", env_ignore_empty=True)

    # --- store -------------------------------------------------------------------------------
    database_url: str = "sqlite+aiosqlite:///supportbot.db"
    db_pool_size: int = Field(default=5, ge=1)
    db_max_overflow: int = Field(default=5, ge=0)
    sqlite_busy_timeout_ms: int = Field(default=1000, ge=0, le=2500)

    # --- business rules ----------------------------------------------------------------------
    refund_limit: Decimal = Field(default=Decimal("150.00"), ge=0, decimal_places=2)
    # order changes' refunds (cancellations, returns, exchanges) past this, in all on an order, wait
    # for staff; not set: they never do (their goods never shipped, or come back)
    change_approval_limit: Decimal | None = Field(default=None, ge=0, decimal_places=2)
    return_window_days: int = Field(default=30, ge=0)
    refund_confirmation: bool = True
    refund_confirmation_ttl_minutes: int = Field(default=30, ge=1)
    # the shop's order numbers, as a regular expression (optional: the stored ids are the truth)
    order_number_pattern: str | None = Field(default=None, max_length=200)

    # --- help center ------------------------------------------------------------------------
    help_center_url: str = "https://help.example.com"
    help_center_locale: str = Field(default="en", pattern=r"^[a-z]{2,3}$")
    # more hosts article URLs may name besides HELP_CENTER_URL's (e.g. the Zendesk export's)
    help_center_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)

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
    # a verified customer's newest orders that come with each turn's first model request (0: none)
    context_orders: int = Field(default=5, ge=0, le=20)

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
    # pace Web API calls to Slack's published limits; off only against a Slack without limits (the benchmark)
    slack_pace: bool = True

    # --- inbox and workers -------------------------------------------------------------------
    inbox_lease_seconds: float = Field(default=30.0, gt=0)
    inbox_max_attempts: int = Field(default=3, ge=1)
    inbox_poll_seconds: float = Field(default=0.5, gt=0)
    worker_concurrency: int = Field(default=256, ge=1, le=10_000)
    worker_loop_lag_ms: int = Field(default=5, ge=0, le=10_000)  # 0: claim whenever a worker is free
    # a customer's messages sent this close together, still waiting, are answered as one turn (0: never)
    coalesce_seconds: float = Field(default=2.0, ge=0, le=60)

    # --- retention ---------------------------------------------------------------------------
    retention_days: int = Field(default=30, ge=1)

    # --- other faces -------------------------------------------------------------------------
    chat_identity_secret: SecretStr | None = None
    chat_allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    trusted_proxy_hops: int = Field(default=0, ge=0, le=10)
    chat_anonymous_requests_per_minute: int = Field(default=120, ge=1)
    chat_anonymous_tickets_per_hour: int = Field(default=5, ge=0)
    # event streams: open at once per visitor identity and per client address, and in all; an idle
    # one is ended (the widget reopens it with Last-Event-ID and misses nothing)
    chat_streams_per_client: int = Field(default=8, ge=1)
    chat_streams_max: int = Field(default=2000, ge=1)
    chat_stream_idle_s: float = Field(default=300.0, gt=0, le=3600)
    unknown_orders_per_hour: int = Field(default=10, ge=1)
    http_body_timeout_s: float = Field(default=5.0, gt=0, le=60)
    http_header_timeout_s: float = Field(default=10.0, gt=0, le=120)
    http_keepalive_timeout_s: float = Field(default=75.0, gt=0, le=3600)
    http_connections_per_address: int = Field(default=64, ge=0)  # 0: no cap
    # operator endpoints (/metrics): a listener of their own, never the public port
    admin_host: str = "127.0.0.1"
    admin_port: int = Field(default=9464, ge=0, le=65535)  # 0: any free port (printed at start)
    mcp_token: SecretStr | None = None
    log_level: str = "INFO"

    @field_validator(
        "support_channels", "support_staff_user_ids", "chat_allowed_origins", "help_center_hosts", mode="before"
    )
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        check_url(value)
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("chat_allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        out = []
        for origin in value:
            exact = origin.rstrip("/").lower()
            if not ORIGIN.fullmatch(exact):
                raise ValueError(
                    f"{origin[:80]!r} is not an origin: give the scheme and host (and port), "
                    "e.g. https://shop.example.com; no path, no wildcard"
                )
            out.append(exact)
        return out

    @field_validator("help_center_hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        out = []
        for host in value:
            name = host.strip().lower().rstrip(".")
            if not HOST.fullmatch(name):
                raise ValueError(f"{host[:80]!r} is not a host name: give the name alone, e.g. acme.zendesk.com")
            out.append(name)
        return out

    @field_validator("order_number_pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if not value:
            return None
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from exc
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
    def change_approval_limit_cents(self) -> int | None:
        return None if self.change_approval_limit is None else int(self.change_approval_limit * 100)

    @property
    def resolved_model_provider(self) -> Literal["claude", "offline"]:
        if self.model_provider is not None:
            return self.model_provider
        return "claude" if self.anthropic_api_key else "offline"


def explain(err: ValidationError) -> str:
    """A settings error as one line naming each setting as it is spelled in the environment; the
    value is repeated only for settings that cannot hold a secret."""
    parts = []
    for e in err.errors():
        name = ".".join(str(p) for p in e["loc"]).upper() or "settings"
        msg = e["msg"].removeprefix("Value error, ")
        field = Settings.model_fields.get(name.lower())
        secret = name.lower() == "database_url" or (field is not None and "Secret" in str(field.annotation))
        shown = "" if secret or not isinstance(e.get("input"), str | int | float) else f" (got {e['input']!r})"
        parts.append(msg if msg.startswith(name) else f"{name}: {msg}{shown}")
    return "; ".join(parts)
