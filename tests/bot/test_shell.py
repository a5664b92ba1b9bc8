"""`supportbot shell` as a newcomer runs it: a subprocess reading piped input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def shell(tmp_path: Path, database_url: str, stdin: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "LOG_LEVEL": "WARNING"}
    env.pop("ANTHROPIC_API_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "bot", "shell", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        stdin=subprocess.DEVNULL if stdin is None else None,
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
    assert "· Looking up your order…" in out  # tool activity shown, dimmed (plain when not a terminal)
    assert "refund $89.99 for ORD-8842 is waiting for you" in out
    assert "supportbot> Done: your refund of $89.99 for order ORD-8842 has been issued." in out
    assert "refund of $89.99 is issued." in out
    assert out.rstrip().endswith("bye") and "Traceback" not in proc.stderr


def test_closed_stdin_ends_cleanly(tmp_path: Path, url: str) -> None:
    proc = shell(tmp_path, url, None, "--as", "sarah@example.com")
    assert proc.returncode == 0 and proc.stdout.rstrip().endswith("bye"), proc.stderr


def test_unknown_customer_is_a_clear_error(tmp_path: Path, url: str) -> None:
    proc = shell(tmp_path, url, "", "--as", "nobody@example.com")
    assert proc.returncode == 2
    assert "no customer has the email 'nobody@example.com'" in proc.stderr and "Traceback" not in proc.stderr


def test_staff_shell_claims_and_approves(tmp_path: Path, url: str) -> None:
    customer = shell(tmp_path, url, "My espresso machine ORD-8901 leaks, refund it\n", "--as", "sarah@example.com")
    assert "ticket #1 opened for our team (P2, refund_approval)" in customer.stdout
    staff = shell(tmp_path, url, "tickets\nclaim 1\napprove 1\nresolve 1\ntickets\n", "--staff", "alex")
    assert staff.returncode == 0, staff.stderr
    out = staff.stdout
    assert "#1 P2 open" in out and "OK: Ticket claimed." in out
    assert "REFUND_PROCESSED: The refund has been issued. (processed)" in out
    assert "OK: Ticket resolved." in out and out.count("no open tickets") == 1


def test_a_help_center_answer_prints_its_source_link(tmp_path: Path, url: str) -> None:
    proc = shell(tmp_path, url, "Do you offer gift wrapping?\nDo you sell gift cards?\n", "--as", "sarah@example.com")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "· Searching our help center…" in out
    assert "supportbot> Here's what our help center says:" in out
    assert "· source: Gift wrapping and gift messages <https://help.example.com/gift-wrap" in out
    assert "supportbot> I couldn't find an answer to that in our help center" in out
    assert out.count("· source:") == 1  # the unanswered question cites nothing
