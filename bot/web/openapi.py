"""The OpenAPI 3.1 description of the website chat API; schemas come from the pydantic models
that make the responses, so the document cannot drift from them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from bot.web.events import EVENT_DATA, MessageData
from bot.web.identity import ANON_HEADER, TOKEN_HEADER
from bot.web.limits import MAX_JSON_DEPTH, RATE_LIMIT, RATE_WINDOW_S, READ_RATE_LIMIT
from bot.web.schemas import (
    MAX_BODY_BYTES,
    ChatRequest,
    ChatResponse,
    ErrorResponse,
    Health,
    TurnAccepted,
)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str, description: str, **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(name)}}, **extra}


ANON_REPLY = {ANON_HEADER: {"description": "The anonymous visitor's id: send it back", "schema": {"type": "string"}}}
CHAT_BODY = {"required": True, "content": {"application/json": {"schema": _ref("ChatRequest")}}}


NOT_JSON = {"415": _json("ErrorResponse", "The request's Content-Type is not application/json")}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}}


def _errors(limit: int = RATE_LIMIT, what: str = "messages, confirmations and cancellations") -> dict[str, Any]:
    return {
        "default": _json("ErrorResponse", "Any other error (500)"),
        "404": _json("ErrorResponse", "No such session, turn or refund for this visitor"),
        "429": _json(
            "ErrorResponse",
            f"More than {limit} {what} in {RATE_WINDOW_S} s from this identity, or (anonymous visitors) "
            "more than CHAT_ANONYMOUS_REQUESTS_PER_MINUTE from this client address",
            headers=RETRY_AFTER,
        ),
        "503": _json("ErrorResponse", "The store is unreachable, or the service is restarting", headers=RETRY_AFTER),
    }


def _body_errors() -> dict[str, Any]:
    return {
        "400": _json("ErrorResponse", f"The body is not JSON, or nests deeper than {MAX_JSON_DEPTH} levels"),
        "408": _json("ErrorResponse", "The body did not arrive within HTTP_BODY_TIMEOUT_S seconds"),
        "413": _json("ErrorResponse", f"The body is larger than {MAX_BODY_BYTES} bytes"),
        "422": _json("ErrorResponse", "The body does not match ChatRequest (e.g. the message is too long)"),
        **NOT_JSON,
    }


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _message_routes() -> dict[str, Any]:
    return {
        "/api/chat": {
            "post": {
                "summary": "Send a message and wait for the guarded reply and the session's state",
                "requestBody": CHAT_BODY,
                "responses": {
                    "200": _json("ChatResponse", "The turn's reply", headers=ANON_REPLY),
                    **_body_errors(),
                    **_errors(),
                },
            }
        },
        "/api/turns": {
            "post": {
                "summary": "Start a turn; read its events from events_url",
                "requestBody": CHAT_BODY,
                "responses": {
                    "202": _json("TurnAccepted", "The turn is queued", headers=ANON_REPLY),
                    **_body_errors(),
                    **_errors(),
                },
            }
        },
    }


def _stream_routes() -> dict[str, Any]:
    last_event = {
        "name": "Last-Event-ID",
        "in": "header",
        "required": False,
        "description": "Replay only the events after this id (as browsers send on reconnect)",
        "schema": {"type": "integer", "minimum": 0},
    }
    sse = {
        "description": "One SSE event per stored turn event (`id:` is its sequence number, `data:` JSON); "
        "the stream ends after `done`",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
        "x-sse-events": {kind: _ref(model.__name__) for kind, model in EVENT_DATA.items()},
    }
    session_sse = {
        "description": "One SSE event `message` per entry of the session's message log (`id:` is its "
        "sequence number, `data:` JSON): the bot's replies, the support team's replies and notices, in "
        "order; the stream stays open for new ones",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
        "x-sse-events": {"message": _ref("MessageData")},
    }
    return {
        "/api/turns/{turn_id}/events": {
            "get": {
                "summary": "The turn's events as Server-Sent Events, replayable",
                "parameters": [_path_param("turn_id"), last_event],
                "responses": {"200": sse, **_errors(READ_RATE_LIMIT, "event-stream reads")},
            }
        },
        "/api/sessions/{session_id}/events": {
            "get": {
                "summary": "The session's messages as Server-Sent Events, including the support team's replies",
                "parameters": [_path_param("session_id"), last_event],
                "responses": {"200": session_sse, **_errors()},
            }
        },
    }


def _decision(verb: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": f"{verb} a refund waiting for this customer's confirmation",
            "parameters": [_path_param("refund_id")],
            "requestBody": {"required": False, "content": {"application/json": {"schema": {"type": "object"}}}},
            "responses": {
                "200": _json("ChatResponse", "What the customer is told", headers=ANON_REPLY),
                **NOT_JSON,
                **_errors(),
            },
        }
    }


def _service_routes() -> dict[str, Any]:
    return {
        "/api/health": {
            "get": {
                "summary": "Whether this replica reaches the store",
                "security": [],
                "responses": {"200": _json("Health", "Healthy"), "503": _json("Health", "The store is unreachable")},
            }
        },
        "/api/openapi.json": {
            "get": {
                "summary": "This description",
                "security": [],
                "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}},
            }
        },
    }


def openapi() -> dict[str, Any]:
    """OpenAPI 3.1 for the website chat API's routes."""
    models: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
        (ChatRequest, "validation"),
        *(
            (m, "serialization")
            for m in (ChatResponse, TurnAccepted, ErrorResponse, Health, MessageData, *EVENT_DATA.values())
        ),
    ]
    _, defs = models_json_schema(models, ref_template="#/components/schemas/{model}")
    return {
        "openapi": "3.1.0",
        "info": {"title": "supportbot website chat API", "version": "1"},
        "components": {
            "schemas": defs["$defs"],
            "securitySchemes": {
                "customerToken": {"type": "apiKey", "in": "header", "name": TOKEN_HEADER},
                "anonymousId": {"type": "apiKey", "in": "header", "name": ANON_HEADER},
            },
        },
        "security": [{"customerToken": []}, {"anonymousId": []}, {}],
        "paths": {
            **_message_routes(),
            **_stream_routes(),
            "/api/refunds/{refund_id}/confirm": _decision("Confirm"),
            "/api/refunds/{refund_id}/cancel": _decision("Cancel"),
            **_service_routes(),
        },
    }
