"""The command line as a newcomer meets it: every mistake is one clear line and exit 2, with
nothing touched; every command says which database it uses."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

SECRET = "s3cret-pw"


def cli(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC", "MODEL_PROVIDER", "SLACK"))}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        capture_output=True,
        text=True,
        env={**base, "LOG_LEVEL": "WARNING", **env},
        cwd=cwd,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def one_clear_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The error line (after the "database …" line when the database was fine)."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert len(lines) == 1 or (len(lines) == 2 and lines[0].startswith("supportbot: database ")), lines
    assert "Traceback" not in proc.stderr
    return lines[-1]


@pytest.mark.parametrize(
    ("env", "args", "says"),
    [
        ({"DATABASE_URL": "garbage"}, ("db", "orders"), "DATABASE_URL is not a database URL; supported: SQLite"),
        (
            {"DATABASE_URL": f"mysql://u:{SECRET}@localhost/db"},
            ("db", "orders"),
            "DATABASE_URL is a mysql URL, which supportbot does not support; supported: SQLite (sqlite+aiosqlite",
        ),
        (
            {"DATABASE_URL": f"postgresql+asyncpg://u:{SECRET}@127.0.0.1:1/x"},
            ("db", "orders"),
            "cannot reach PostgreSQL at 127.0.0.1:1 (connection refused)",
        ),
        ({"DATABASE_URL": "sqlite:///x.db"}, ("db", "orders"), "needs the async driver: sqlite+aiosqlite://"),
        ({"LOG_LEVEL": "LOUD"}, ("db", "orders"), "LOG_LEVEL: must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ({}, ("shell", "--as", "sarah@example.com", "--provider", "claude"), "ANTHROPIC_API_KEY is not set"),
        ({"MODEL_PROVIDER": "claude"}, ("shell", "--as", "sarah@example.com"), "--provider offline"),
        ({}, ("eval", "--provider", "claude"), "ANTHROPIC_API_KEY is not set"),
        (
            {},
            ("eval", "--scenario", "nope"),
            "unknown scenario 'nope'; the scenarios are: angry_without_legal_words, bot_identity_question, cant_do, "
            "chit_chat, confirmation_declined,",
        ),
    ],
)
def test_a_mistake_is_one_line_exit_2_and_touches_nothing(
    tmp_path: Path, env: dict[str, str], args: tuple[str, ...], says: str
) -> None:
    err = one_clear_line(cli(tmp_path, *args, **env))
    assert says in err and SECRET not in err
    assert list(tmp_path.iterdir()) == []  # no database file was created


def test_a_file_that_is_not_a_database_is_left_unchanged(tmp_path: Path) -> None:
    notes = tmp_path / "notadb.txt"
    notes.write_text("my shopping list\n")
    err = one_clear_line(cli(tmp_path, "db", "orders", DATABASE_URL="sqlite+aiosqlite:///notadb.txt"))
    assert f"{notes} is not a SQLite database (it was left unchanged)" in err
    assert notes.read_text() == "my shopping list\n" and sorted(p.name for p in tmp_path.iterdir()) == ["notadb.txt"]


def test_every_command_says_which_database_it_uses(tmp_path: Path) -> None:
    proc = cli(tmp_path, "db", "orders", DATABASE_URL="sqlite+aiosqlite:///shop.db")
    assert proc.returncode == 0, proc.stderr
    assert f"supportbot: database SQLite {tmp_path / 'shop.db'}\n" in proc.stderr
    assert proc.stdout.startswith("order ")  # stdout stays the command's own output


def test_version(tmp_path: Path) -> None:
    proc = cli(tmp_path, "--version")
    assert proc.returncode == 0 and proc.stdout.strip() == "supportbot 0.1.0"


def test_db_reset_demo_resets_a_demo_database_and_refuses_real_data(tmp_path: Path) -> None:
    url = {"DATABASE_URL": "sqlite+aiosqlite:///demo.db"}
    assert cli(tmp_path, "db", "seed", **url).returncode == 0
    assert cli(tmp_path, "db", "reset", "--demo", **url).returncode == 0
    data = {"customers": [{"id": "C-9", "name": "Ola", "email": "ola@example.com"}]}
    (tmp_path / "real.json").write_text(json.dumps(data))
    assert cli(tmp_path, "db", "import", "real.json", **url).returncode == 0
    err = one_clear_line(cli(tmp_path, "db", "reset", "--demo", **url))
    assert "holds customers that are not the demo company's (C-9), so it was left unchanged" in err
    assert "ORD-8842" in cli(tmp_path, "db", "orders", **url).stdout
    assert cli(tmp_path, "db", "reset", **url).returncode == 2  # --demo is required: say what you mean


def test_db_import_help_describes_the_file_format(tmp_path: Path) -> None:
    proc = cli(tmp_path, "db", "import", "--help")
    assert proc.returncode == 0
    for word in ('"customers"', '"orders"', '"unit_price"', "shipping", "discount", "delivered_at", "time zone"):
        assert word in proc.stdout, word


@pytest.mark.parametrize(
    ("slack", "missing"),
    [
        ({"SLACK_BOT_TOKEN": "xoxb-x"}, "SLACK_SIGNING_SECRET is not set, and HTTP mode needs it"),
        ({"SLACK_SIGNING_SECRET": "s"}, "SLACK_BOT_TOKEN is not set, and HTTP mode needs it"),
        ({"SLACK_APP_TOKEN": "xapp-x"}, "SLACK_BOT_TOKEN is not set, and Socket Mode needs it"),
    ],
)
def test_run_with_a_partial_slack_configuration_names_what_is_missing(
    tmp_path: Path, slack: dict[str, str], missing: str
) -> None:
    err = one_clear_line(cli(tmp_path, "run", "--port", "0", "--host", "127.0.0.1", **slack))
    assert err.startswith("supportbot: Slack is only partly configured: ") and missing in err
    assert list(tmp_path.iterdir()) == []


async def test_run_without_slack_serves_the_website_api_alone(tmp_path: Path, database_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC", "MODEL_PROVIDER", "SLACK"))}
    env |= {"DATABASE_URL": database_url, "LOG_LEVEL": "WARNING", "ADMIN_PORT": "0"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        "--http",
        "--port",
        "0",
        "--host",
        "127.0.0.1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=tmp_path,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        async with asyncio.timeout(120):
            listening = (await proc.stdout.readline()).decode()
            admin = (await proc.stdout.readline()).decode()
            said = (await proc.stdout.readline()).decode()
        assert "(website chat API only, replica " in listening, listening + (await proc.stderr.read()).decode()
        assert said.startswith("supportbot: Slack is off (no SLACK_* settings)") and "shell --staff" in said
        url = listening.split("listening on ", 1)[1].split()[0]
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/healthz") as resp:
                assert resp.status == 200 and (await resp.json())["ok"] is True
            async with http.get(f"{url}/metrics") as resp:
                assert resp.status == 404  # the shop's counters are not public
            admin_url = admin.split("metrics on ", 1)[1].split()[0]
            assert admin_url.startswith("http://127.0.0.1:"), admin  # ADMIN_HOST's default
            async with http.get(admin_url) as resp:
                assert resp.status == 200 and "supportbot_web_rate_limited" in await resp.text()
            async with http.post(f"{url}/api/chat", json={"message": "What are your opening hours?"}) as resp:
                assert resp.status == 200 and (await resp.json())["reply"]
            async with http.post(f"{url}/slack/events", data="{}") as resp:
                assert resp.status == 404  # Slack is off
        proc.terminate()
        async with asyncio.timeout(60):
            assert await proc.wait() == 0
        assert "Traceback" not in (await proc.stderr.read()).decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
