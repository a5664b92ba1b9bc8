"""`python3 dev.py demo` as a newcomer runs it: a fresh demo each time, on its own database,
ending cleanly whatever stdin is.

Each test runs the real dev.py from a scratch folder that shares this checkout's .venv, so the
demo database it makes is the scratch folder's, not this checkout's.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLENDER = "My blender ORD-8842 arrived broken, I'd like a refund\nyes\n"


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """dev.py, pyproject.toml and the installed .venv, as a newcomer's checkout has them."""
    stamp = ROOT / ".venv" / ".supportbot-installed"
    assert stamp.exists(), "these tests use the .venv that `python3 dev.py test` makes"
    root = tmp_path / "checkout"
    root.mkdir()
    shutil.copy(ROOT / "dev.py", root / "dev.py")
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    (root / ".venv").symlink_to(ROOT / ".venv")
    return root


def demo(root: Path, stdin: str | None, *args: str, closed_stdin: bool = False) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC", "MODEL_PROVIDER"))}
    env |= {"LOG_LEVEL": "WARNING", "DATABASE_URL": f"sqlite+aiosqlite:///{root / 'supportbot.db'}"}
    return subprocess.run(
        [sys.executable, str(root / "dev.py"), "demo", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=root.parent,  # from another folder: the demo database does not depend on it
        timeout=180,
        stdin=None if stdin is not None or closed_stdin else subprocess.DEVNULL,
        preexec_fn=(lambda: os.close(0)) if closed_stdin else None,
    )


EXISTING = "Order ORD-8842 (ProBlend 500 blender): refund of $89.99 is issued."


def test_every_demo_starts_fresh_on_its_own_database(checkout: Path) -> None:
    real = checkout / "supportbot.db"  # a real database, named by DATABASE_URL: the demo leaves it alone
    with sqlite3.connect(real) as db:
        db.execute("CREATE TABLE mine (x)")
    before = real.read_bytes()
    for _ in range(2):
        run = demo(checkout, BLENDER)
        assert run.returncode == 0, run.stderr
        assert "Done: your refund of $89.99 for order ORD-8842 has been issued." in run.stdout, run.stdout
        assert EXISTING not in run.stdout  # no refund left over from the run before
        assert f"database SQLite {checkout / '.demo' / 'supportbot-demo.db'}" in run.stderr
    assert real.read_bytes() == before
    kept = demo(checkout, BLENDER, "--keep")  # --keep continues from the last run
    assert EXISTING in kept.stdout and "Done:" not in kept.stdout, (
        kept.stdout
    )  # the refund made before, told from its row


def test_demo_with_stdin_closed_ends_cleanly(checkout: Path) -> None:
    run = demo(checkout, None, closed_stdin=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.rstrip().endswith("bye") and "Traceback" not in run.stderr
