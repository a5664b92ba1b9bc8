"""`supportbot shell` as a newcomer runs it: a subprocess reading piped input."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from tests.fakes.anthropic_api import FakeMessagesAPI

ROOT = Path(__file__).resolve().parents[2]


def env_for(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC", "MODEL_PROVIDER"))}
    return {**env, "DATABASE_URL": database_url, "LOG_LEVEL": "WARNING", **extra}


def shell(
    tmp_path: Path, database_url: str, stdin: str | None, *args: str, closed_stdin: bool = False
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", "shell", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env_for(database_url),
        cwd=tmp_path,
        timeout=120,
        stdin=subprocess.DEVNULL if stdin is None and not closed_stdin else None,
        preexec_fn=(lambda: os.close(0)) if closed_stdin else None,  # stdin really closed, as with <&-
    )


@pytest.fixture
def url(database_url: str) -> str:
    return database_url


def test_customer_refund_confirmed_by_typing_yes(tmp_path: Path, url: str) -> None:
    proc = shell(
        tmp_path,
        url,
        "My blender ORD-8842 arrived broken, refund please\nyes\n/refund-status\n",
        "--as",
        "sarah@example.com",
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "you are Sarah Chen" in out and "offline-rules" in out
    assert "· Preparing your refund…" in out  # tool activity shown, dimmed (plain when not a terminal)
    # the shell's own words for the confirmation step: there is no button to press here
    assert "I can refund $89.99 for ProBlend 500 blender (order ORD-8842). Shall I go ahead? Reply yes" in out
    assert "press confirm" not in out.lower() and "button" not in out.lower()
    assert "supportbot> Done: your refund of $89.99 for order ORD-8842 has been issued." in out
    assert "refund of $89.99 is issued." in out
    assert out.rstrip().endswith("bye") and "Traceback" not in proc.stderr


def test_empty_stdin_ends_cleanly(tmp_path: Path, url: str) -> None:
    proc = shell(tmp_path, url, None, "--as", "sarah@example.com")
    assert proc.returncode == 0 and proc.stdout.rstrip().endswith("bye"), proc.stderr


def test_closed_stdin_ends_cleanly(tmp_path: Path, url: str) -> None:
    proc = shell(tmp_path, url, None, "--as", "sarah@example.com", closed_stdin=True)
    assert proc.returncode == 0 and proc.stdout.rstrip().endswith("bye"), proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_customer_is_a_clear_error(tmp_path: Path, url: str) -> None:
    proc = shell(tmp_path, url, "", "--as", "nobody@example.com")
    assert proc.returncode == 2
    assert "no customer has the email 'nobody@example.com'" in proc.stderr and "Traceback" not in proc.stderr


def test_staff_shell_claims_and_approves(tmp_path: Path, url: str) -> None:
    customer = shell(tmp_path, url, "My espresso machine ORD-8901 leaks, refund it\n", "--as", "sarah@example.com")
    # the customer is told a person will help, never the ticket's number, priority or reason
    assert "a member of our support team has been asked to help" in customer.stdout
    assert (
        "ticket #" not in customer.stdout and "P2" not in customer.stdout and "refund_approval" not in customer.stdout
    )
    staff = shell(tmp_path, url, "tickets\nclaim 1\napprove 1\nresolve 1\ntickets\n", "--staff", "alex")
    assert staff.returncode == 0, staff.stderr
    out = staff.stdout
    assert "#1 P2 open" in out and "OK: Ticket claimed." in out
    assert "REFUND_PROCESSED: The refund has been issued. (processed)" in out
    assert "OK: Ticket resolved." in out and out.count("no open tickets") == 1


@contextlib.asynccontextmanager
async def _spawn_shell(tmp_path: Path, env: dict[str, str], *args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "shell",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=tmp_path,
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:  # the test failed: do not leave the shell behind
            proc.kill()
            await proc.wait()


async def _read_until(stream: asyncio.StreamReader, text: str) -> str:
    seen = ""
    async with asyncio.timeout(120):
        while text not in seen:
            line = await stream.readline()
            assert line, f"the shell ended before printing {text!r}: {seen}"
            seen += line.decode()
    return seen


async def test_ctrl_c_at_the_prompt_ends_at_once(tmp_path: Path, url: str) -> None:
    async with _spawn_shell(tmp_path, env_for(url), "--as", "sarah@example.com") as proc:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        await _read_until(proc.stdout, "you are Sarah Chen")
        proc.stdin.write(b"where is ORD-8901?\n")
        await proc.stdin.drain()
        await _read_until(proc.stdout, "supportbot> ")
        proc.send_signal(signal.SIGINT)  # stdin stays open: nothing but the signal can end it
        async with asyncio.timeout(30):
            code = await proc.wait()
        err = (await proc.stderr.read()).decode()
    assert code == 130 and "Traceback" not in err, err


@pytest.fixture
async def hanging_model() -> AsyncIterator[tuple[FakeMessagesAPI, asyncio.Event]]:
    called, release = asyncio.Event(), asyncio.Event()

    async def respond(body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
        called.set()
        await release.wait()  # the model is thinking while Ctrl-C arrives
        return [{"type": "text", "text": "late"}], "end_turn"

    fake = FakeMessagesAPI(respond)
    await fake.start()
    yield fake, called
    release.set()
    await fake.close()


async def test_ctrl_c_during_a_turn_ends_at_once_and_leaves_the_store_whole(
    tmp_path: Path, url: str, hanging_model: tuple[FakeMessagesAPI, asyncio.Event]
) -> None:
    fake, called = hanging_model
    env = env_for(url, ANTHROPIC_API_KEY="test-key", ANTHROPIC_BASE_URL=fake.url, ANTHROPIC_TIMEOUT_S="120")
    async with _spawn_shell(tmp_path, env, "--as", "sarah@example.com", "--provider", "claude") as proc:
        assert proc.stdin is not None and proc.stderr is not None
        proc.stdin.write(b"hello there\n")
        await proc.stdin.drain()
        async with asyncio.timeout(120):
            await called.wait()
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            code = await proc.wait()
        err = (await proc.stderr.read()).decode()
    assert code == 130 and "Traceback" not in err, err
    if make_url(url).get_backend_name() == "sqlite":
        with sqlite3.connect(make_url(url).database or "") as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    # the next run goes on from a whole store: the interrupted turn left no half-written state behind
    again = shell(tmp_path, url, "/refund-status\n", "--as", "sarah@example.com")
    assert again.returncode == 0 and "I couldn't find any refunds on your account." in again.stdout, again.stderr


def test_staff_shell_shows_a_ticket_and_says_how_to_use_each_command(tmp_path: Path, url: str) -> None:
    customer = shell(
        tmp_path,
        url,
        "My espresso machine ORD-8901 leaks, refund it\nThis is a disgrace, my lawyer will hear about it\n",
        "--as",
        "sarah@example.com",
    )
    assert "a member of our support team has been asked to help" in customer.stdout, customer.stderr
    staff = shell(
        tmp_path,
        url,
        "show 1\nclaim\nclaim one\nlink 1\nshow 99\n/refund-status ORD-9999\n/refund-status ORD-8901\nhelp\n",
        "--staff",
        "alex",
    )
    assert staff.returncode == 0, staff.stderr
    out = staff.stdout
    # raised to P1: the list and the ticket show the newest reason
    assert "#1 P1 open    Legal threat or complaint ORD-8901" in out
    assert "#1 P1 open: Legal threat or complaint" in out
    assert "customer: Sarah Chen <sarah@example.com>; order: ORD-8901; refund: RF-" in out
    history = out[out.index("history:") : out.index("conversation:")]
    assert " opened P2 refund_approval by supportbot" in history and " raised P1 legal by supportbot" in history
    assert "  customer: My espresso machine ORD-8901 leaks, refund it" in out
    assert "  tool: process_refund" in out
    assert "usage: claim N" in out and out.count("usage: claim N") == 2
    assert "usage: link N EMAIL" in out and "usage: Staff commands" not in out
    assert "NOT_FOUND: No such ticket." in out
    assert "No such order: ORD-9999." in out and "customer's account" not in out
    assert "ORD-8901 (Barista Pro espresso machine): $349.00, pending approval, refund RF-" in out
    assert "  show N               ticket N: details, its conversation and its escalation history" in out


def test_a_help_center_answer_prints_its_source_link(tmp_path: Path, url: str) -> None:
    proc = shell(tmp_path, url, "Do you offer gift wrapping?\nDo you sell gift cards?\n", "--as", "sarah@example.com")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "· Searching our help center…" in out
    assert "supportbot> Here's what our help center says:" in out
    assert "· source: Gift wrapping and gift messages <https://help.example.com/gift-wrap" in out
    assert "supportbot> I couldn't find an answer to that in our help center" in out
    assert out.count("· source:") == 1  # the unanswered question cites nothing
