"""Prometheus metrics, served on GET /metrics. Names are the contract with dashboards and
`supportbot bench`, which reads the overhead histogram from here rather than guessing it.

Defined at the bottom of the package stack so that every layer may count: the desk counts turns,
tool outcomes and escalations for every face, labelled by the session's channel (slack, web,
shell, mcp); the faces count what only they see (Slack events, retries, queue depth)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)  # process_cpu_seconds_total: the benchmark's CPU per turn

LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

EVENTS = Counter("supportbot_events_received", "Slack events received", ["type"], registry=REGISTRY)
DEDUPED = Counter(
    "supportbot_events_deduplicated", "Slack events already stored (retries, mention twins)", registry=REGISTRY
)
INBOX_DEPTH = Gauge("supportbot_inbox_depth", "Messages waiting or being answered", registry=REGISTRY)
INBOX_AGE = Gauge("supportbot_inbox_oldest_age_seconds", "Age of the oldest unanswered message", registry=REGISTRY)
TURNS = Counter("supportbot_turns", "Customer turns answered", ["channel", "outcome"], registry=REGISTRY)
TURN_SECONDS = Histogram(
    "supportbot_turn_seconds",
    "Message received to reply ready for its channel (Slack: accepted by Slack)",
    ["channel"],
    buckets=LATENCY,
    registry=REGISTRY,
)
MODEL_SECONDS = Histogram(
    "supportbot_model_seconds", "Time awaiting the model, per turn", ["channel"], buckets=LATENCY, registry=REGISTRY
)
SLACK_SECONDS = Histogram(
    "supportbot_slack_seconds", "Time awaiting Slack's Web API, per turn", buckets=LATENCY, registry=REGISTRY
)
OVERHEAD_SECONDS = Histogram(
    "supportbot_turn_overhead_seconds",
    "Turn time minus time awaiting the model and Slack: the bot's own cost",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),  # queueing shows
    registry=REGISTRY,
)
TOOL_OUTCOMES = Counter("supportbot_tool_outcomes", "Tool call outcomes", ["channel", "code"], registry=REGISTRY)
ESCALATIONS = Counter("supportbot_escalations", "Tickets opened or raised", ["channel", "priority"], registry=REGISTRY)
SLACK_RETRIES = Counter("supportbot_slack_retries", "Slack Web API calls retried", ["reason"], registry=REGISTRY)
DEAD_LETTERS = Counter(
    "supportbot_dead_letters", "Messages given up on after repeated failures", ["channel"], registry=REGISTRY
)
WEB_RATE_LIMITED = Counter(
    "supportbot_web_rate_limited", "Website chat requests refused with 429, by the limit hit", ["by"], registry=REGISTRY
)
WEB_TICKETS_REFUSED = Counter(
    "supportbot_web_anonymous_tickets_refused",
    "New tickets refused to anonymous website visitors over their address's hourly cap",
    registry=REGISTRY,
)
PRUNED = Counter("supportbot_pruned_rows", "Rows deleted by retention, by table", ["table"], registry=REGISTRY)
REPLIES_REPLACED = Counter(
    "supportbot_replies_replaced",
    "Model replies not sent as written (the claims check or the output guard): contradicted by the store, tool output",
    ["reason"],
    registry=REGISTRY,
)

# --- the store's own cost (storage/engine.py): what `supportbot bench` and the budget tests read ------------
DB_STATEMENTS = Counter(
    "supportbot_db_statements",
    "SQL statements sent to the database: read (SELECT) or write (anything else, BEGIN/COMMIT aside)",
    ["kind"],
    registry=REGISTRY,
)
DB_TRANSACTIONS = Counter(
    "supportbot_db_transactions", "Store transactions opened, by kind (read, write)", ["kind"], registry=REGISTRY
)
LOCK_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
DB_WRITE_LOCK_WAIT = Histogram(
    "supportbot_db_write_lock_wait_seconds",
    "SQLite: time a write transaction waited for this process's write lock",
    buckets=LOCK_BUCKETS,
    registry=REGISTRY,
)
DB_WRITE_LOCK_HOLD = Histogram(
    "supportbot_db_write_lock_hold_seconds",
    "SQLite: time a write transaction held this process's write lock (event-loop time included)",
    buckets=LOCK_BUCKETS,
    registry=REGISTRY,
)
