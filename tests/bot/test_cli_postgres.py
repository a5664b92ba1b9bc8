"""Every command on PostgreSQL, as an operator runs them (DATABASE_URL=postgresql+asyncpg://…)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from sqlalchemy.engine import make_url

from agent.eval import load_scenarios
from tests.conftest import _pg_exec


def cli(url: str, *args: str, stdin: str = "", cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC", "SLACK"))}
    env |= {"DATABASE_URL": url, "LOG_LEVEL": "WARNING", "MODEL_PROVIDER": "offline"}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], input=stdin, capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


async def test_every_command_works_on_postgresql(pg_database_url: str, pg_url: str, tmp_path: Path) -> None:
    url = pg_database_url
    upgraded = cli(url, "db", "upgrade", cwd=tmp_path)
    assert upgraded.returncode == 0
    u = make_url(url)
    assert f"supportbot: database PostgreSQL {u.host}:{u.port or 5432}/{u.database}\n" in upgraded.stderr
    assert u.password is None or u.password not in upgraded.stderr
    data = {
        "customers": [{"id": "C-9", "name": "Ola", "email": "ola@example.com"}],
        "orders": [
            {
                "id": "ORD-9990",
                "customer_id": "C-9",
                "status": "delivered",
                "total": "19.99",
                "currency": "USD",
                "placed_at": "2026-11-01T00:00:00Z",
                "delivered_at": "2026-11-20T00:00:00Z",
                "items": [{"sku": "S", "name": "Socks", "quantity": 1, "unit_price": "19.99"}],
            }
        ],
    }
    (tmp_path / "data.json").write_text(json.dumps(data))
    imported = cli(url, "db", "import", str(tmp_path / "data.json"), cwd=tmp_path)
    assert imported.returncode == 0 and "imported 1 customers, 1 orders, 1 items" in imported.stdout
    shell = cli(
        url, "shell", "--as", "ola@example.com", stdin="refund ORD-9990, the socks arrived torn\nyes\n", cwd=tmp_path
    )
    assert shell.returncode == 0 and "Done: your refund of $19.99 for order ORD-9990" in shell.stdout, shell.stderr
    orders = cli(url, "db", "orders", cwd=tmp_path)
    assert "ORD-9990" in orders.stdout and "ORD-8842" not in orders.stdout  # imported data: no demo seed
    staff = cli(url, "shell", "--staff", "ana", stdin="tickets\n", cwd=tmp_path)
    assert staff.returncode == 0 and "no open tickets" in staff.stdout
    assert "no dead letters" in cli(url, "inbox", "list", cwd=tmp_path).stdout
    scratch = make_url(pg_url).set(database=f"sb_eval_{uuid.uuid4().hex[:8]}")
    await _pg_exec(pg_url, f"CREATE DATABASE {scratch.database}")
    try:
        ev = cli(
            url,
            "eval",
            "--provider",
            "offline",
            "--scenario",
            "damaged_item_refund",
            "--database-url",
            scratch.render_as_string(hide_password=False),
            cwd=tmp_path,
        )
        n = len(next(s for s in load_scenarios() if s.name == "damaged_item_refund").phrasings)
        assert ev.returncode == 0 and f"{n}/{n} passed" in ev.stdout, ev.stdout + ev.stderr
    finally:
        await _pg_exec(pg_url, f"DROP DATABASE IF EXISTS {scratch.database} WITH (FORCE)")


async def test_run_refuses_a_database_that_was_not_migrated(pg_url: str, tmp_path: Path) -> None:
    empty = make_url(pg_url).set(database=f"sb_empty_{uuid.uuid4().hex[:8]}")
    await _pg_exec(pg_url, f"CREATE DATABASE {empty.database}")
    try:
        env_url = empty.render_as_string(hide_password=False)
        proc = subprocess.run(
            [sys.executable, "-m", "bot", "run", "--http", "--port", "0", "--host", "127.0.0.1"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env={
                **os.environ,
                "DATABASE_URL": env_url,
                "SLACK_BOT_TOKEN": "xoxb-x",
                "SLACK_SIGNING_SECRET": "s",
                "SLACK_API_URL": "http://127.0.0.1:9/api/",
                "LOG_LEVEL": "WARNING",
            },
        )
        assert proc.returncode == 2 and "run `supportbot db upgrade` once" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    finally:
        await _pg_exec(pg_url, f"DROP DATABASE IF EXISTS {empty.database} WITH (FORCE)")
