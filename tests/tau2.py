"""τ2-bench's public data, read where it lies beside the checkout (`../shared/data/tau2/`), never
copied into the repository."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

TAU2 = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "tau2"


def assistant_replies() -> list[str]:
    """Every reply Claude models wrote to τ2's simulated airline customers."""
    return [
        m["content"]
        for path in sorted((TAU2 / "conversations").glob("airline_*-*.json.gz"))
        for conv in json.loads(gzip.decompress(path.read_bytes()))
        for m in conv["messages"]
        if m["role"] == "assistant" and m.get("content")
    ]


def retail_users() -> list[dict[str, Any]]:
    """τ2's retail store's customers: name, address, email, payment methods, orders."""
    return list(json.loads(gzip.decompress((TAU2 / "retail_db.json.gz").read_bytes()))["users"].values())
