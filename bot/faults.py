"""Fault injection for the crash tests: a replica started with FAULT_CRASH_AT=<point> kills itself,
hard, when it reaches that point (before_model_call, after_post, after_ticket_post). Read from
the environment apart from the app's settings: it is never a production setting."""

from __future__ import annotations

import functools
import logging
import os
import signal

log = logging.getLogger(__name__)


@functools.cache
def _armed() -> str | None:
    return os.environ.get("FAULT_CRASH_AT") or None


def crash_point(name: str) -> None:
    """Die here, with SIGKILL, when FAULT_CRASH_AT names this point."""
    if _armed() == name:
        log.warning("FAULT_CRASH_AT=%s: killing the process", name)
        os.kill(os.getpid(), signal.SIGKILL)
