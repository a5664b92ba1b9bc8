"""What can go wrong in `storage` (a rule saying no is never an exception here either):

StorageError
 ├── StoreUnavailable     the database cannot be used as configured: not reachable, refusing us,
 │                        or not a database (one line and exit 2 for a command)
 ├── DatabaseUrlError     a database URL supportbot cannot use; the message names what would work
 ├── NestedWrite          a write transaction opened inside another in the same task (a bug: it
 │                        would deadlock)
 ├── StateError           a move a state machine does not allow (a bug, never a race)
 ├── NotADemoDatabase     `db reset --demo` on a database holding customers of its own
 ├── ImportError_         an import file that cannot be imported: every record and field at fault
 └── KbImportError        help-center files that cannot be imported: every file at fault
      └── Problem         one file's (or article's) fault, in words its author can act on
"""

from __future__ import annotations


class StorageError(Exception):
    """Base of everything that went wrong in `storage`."""


class StoreUnavailable(StorageError):
    """The database cannot be used as configured: not reachable, refusing us, or not a database."""


class DatabaseUrlError(StorageError, ValueError):
    """A database URL supportbot cannot use; the message names what would work."""


class NestedWrite(StorageError, RuntimeError):
    """A write transaction was opened inside another one in the same task (it would deadlock)."""


class StateError(StorageError):
    """A move the state machine does not allow."""

    def __init__(self, machine: str, frm: str, to: str) -> None:
        self.machine, self.frm, self.to = machine, frm, to
        super().__init__(f"{machine}: {frm} -> {to} is not an allowed move")


class NotADemoDatabase(StorageError):
    """The database holds customers of its own; `db reset --demo` leaves it alone."""

    def __init__(self, customers: list[str]) -> None:
        self.customers = customers
        super().__init__(
            f"this database holds customers that are not the demo company's ({', '.join(customers)}), "
            "so it was left unchanged; `db reset --demo` only resets demo databases"
        )


def _listed(problems: list[str]) -> str:
    shown = "\n".join(f"  - {p}" for p in problems[:20])
    more = f"\n  … and {len(problems) - 20} more" if len(problems) > 20 else ""
    return f"{shown}{more}"


class ImportError_(StorageError):  # noqa: N801 - the builtin ImportError is another thing
    """A file that cannot be imported; `problems` lists every record and field at fault."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{len(problems)} problem(s) in the import file:\n{_listed(problems)}")


class KbImportError(StorageError):
    """Files that cannot be imported; `problems` names every file (and article) at fault."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{len(problems)} problem(s):\n{_listed(problems)}")


class Problem(KbImportError, ValueError):
    """Something wrong with one file (or article), said in words its author can act on."""

    def __init__(self, message: str) -> None:
        super().__init__([message])
        self.args = (message,)
