"""The website chat API's request and response shapes; the OpenAPI schemas are generated from them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bot.web.events import CitationData, ConfirmationData, MessageData, SessionState
from bot.web.identity import IdentityView
from bot.web.limits import RATE_LIMIT, RATE_WINDOW_S, READ_RATE_LIMIT

MAX_BODY_BYTES = 16 * 1024
MAX_MESSAGE_CHARS = 4000
__all__ = ["RATE_LIMIT", "RATE_WINDOW_S", "READ_RATE_LIMIT"]  # re-exported: defined with the other limits


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session_id: str | None = Field(default=None, max_length=40)
    message: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS, pattern=r"\S")

    @field_validator("message", "session_id")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        return value.replace("\x00", "") if value else value  # PostgreSQL text cannot hold NUL


class ChatResponse(BaseModel):
    session_id: str
    turn_id: str
    identity: IdentityView
    reply: str
    citations: list[CitationData]  # the help-center articles the reply used, each once
    status: list[str]
    confirmation: ConfirmationData | None
    failed: bool
    state: SessionState
    messages: list[MessageData]  # from the support team (or notices) since the visitor's last turn


class TurnAccepted(BaseModel):
    session_id: str
    turn_id: str
    events_url: str
    session_events_url: str
    identity: IdentityView


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class Health(BaseModel):
    ok: bool
