"""The desk's exceptions (refusals are data: an act answers with a `ToolResult` whose code says why).

DeskError
 └── LeaseLost     a write on behalf of a work item, or a delivery, was fenced off: another
                   worker holds the lease now. Nothing was written or posted; the caller stops.
"""

from __future__ import annotations


class DeskError(Exception):
    """Base of everything that went wrong inside the desk (not a rule saying no)."""


class LeaseLost(DeskError):
    """The fence refused: another worker owns this row or work item now."""

    def __init__(self, what: int | str) -> None:
        self.what = what
        super().__init__(f"the lease on {what} is held by another worker")
