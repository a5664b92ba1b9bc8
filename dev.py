#!/usr/bin/env python3
"""Newcomer entry point that needs nothing but python3.

    python3 dev.py demo   # venv + install + chat with supportbot in the terminal (SQLite, offline model)
    python3 dev.py test   # venv + install + ruff + the test suite

The virtual environment lives in .venv and is reinstalled only when pyproject.toml changes.
The demo runs on its own database, .demo/supportbot-demo.db, reset to the demo company at every
start (`supportbot db reset --demo`); `python3 dev.py demo --keep` continues from the last run.
Other arguments go to `supportbot shell` (default: --as sarah@example.com).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".supportbot-installed"
DEMO_DB = ROOT / ".demo" / "supportbot-demo.db"


def _ensure_venv() -> None:
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not (BIN / "python").exists():
        print("· creating .venv", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("· installing supportbot and its test tools into .venv", file=sys.stderr)
    pip = [str(BIN / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "-e", f"{ROOT}[test]"], check=True)
    STAMP.write_text(wanted)


def _stdin_closed() -> bool:
    try:
        os.fstat(0)
    except OSError:
        return True
    return False


def demo(argv: list[str], *, stdin_closed: bool) -> int:
    """The shell on the demo database, kept apart from any real supportbot.db, fresh unless --keep."""
    keep = "--keep" in argv
    args = [a for a in argv if a != "--keep"] or ["--as", "sarah@example.com"]
    env = {**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{DEMO_DB}"}
    stdin = subprocess.DEVNULL if stdin_closed else None  # a closed stdin reads as an empty one
    supportbot = str(BIN / "supportbot")
    if not keep or not DEMO_DB.exists():
        reset = subprocess.call([supportbot, "db", "reset", "--demo"], env=env, stdin=subprocess.DEVNULL)
        if reset != 0:
            return reset
    return subprocess.call([supportbot, "shell", *args], env=env, stdin=stdin)


def main(argv: list[str]) -> int:
    stdin_closed = _stdin_closed()  # first, before any file we open can take descriptor 0
    if not argv or argv[0] not in {"demo", "test"}:
        print(__doc__, file=sys.stderr)
        return 2
    _ensure_venv()
    os.chdir(ROOT)
    if argv[0] == "demo":
        return demo(argv[1:], stdin_closed=stdin_closed)
    lint = subprocess.call([str(BIN / "ruff"), "check", "."])
    if lint != 0:
        return lint
    return subprocess.call([str(BIN / "python"), "-m", "pytest", *argv[1:]])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
