"""Errors a command-line user can fix themselves: printed as one line, never a traceback."""

from __future__ import annotations


class UsageError(Exception):
    """A problem the user can fix; printed as one line, exit code 2 (raised by any subcommand)."""
