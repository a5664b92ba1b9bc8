#!/usr/bin/env python3
"""Newcomer entry point that needs nothing but python3.

    python3 dev.py demo   # venv + install + chat with supportbot in the terminal (SQLite, offline model)
    python3 dev.py test   # venv + install + ruff + the test suite

The virtual environment lives in .venv and is reinstalled only when pyproject.toml changes.
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


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"demo", "test"}:
        print(__doc__, file=sys.stderr)
        return 2
    _ensure_venv()
    os.chdir(ROOT)
    if argv[0] == "demo":
        args = argv[1:] or ["--as", "sarah@example.com"]
        return subprocess.call([str(BIN / "supportbot"), "shell", *args])
    lint = subprocess.call([str(BIN / "ruff"), "check", "."])
    if lint != 0:
        return lint
    return subprocess.call([str(BIN / "python"), "-m", "pytest", *argv[1:]])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
