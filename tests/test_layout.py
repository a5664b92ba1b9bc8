"""The folder rules (no import circles, tools know no face, no face imports another), checked by
the team's layout script (a copy of ../shared/layout_check.py kept in .ci/)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_layout_has_no_circles_and_no_problems() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / ".ci" / "layout_check.py")], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip().splitlines()[-1] == "layout: 0 import circles, 0 problems", done.stdout
    assert done.returncode == 0
