"""What can go wrong in the faces and the process (refusals are results, never exceptions):

BotError
 ├── UsageError        a command-line user's mistake: one line, exit code 2, never a traceback
 │    └── BadUsage     a staff shell command used wrongly: the shell prints its usage line
 ├── ApiError          a website API request answered with an error status and a JSON body
 ├── BodyError         a request body the website API will not read
 │    ├── BodyTooLarge past the body limit (413)
 │    ├── BodyTimeout  did not arrive within HTTP_BODY_TIMEOUT_S (408)
 │    └── BadJson      not JSON, or nested too deep (400)
 └── PostgresError     the benchmark's own PostgreSQL server could not be started or reached
"""

from __future__ import annotations


class BotError(Exception):
    """Base of everything that went wrong in `bot`."""


class UsageError(BotError):
    """A problem the user can fix; printed as one line, exit code 2 (raised by any subcommand)."""


class BadUsage(UsageError):
    """A staff command used wrongly; the shell prints that command's usage line."""


class ApiError(BotError):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


class BodyError(BotError):
    """A request body the website API will not read."""


class BodyTooLarge(BodyError):
    pass


class BodyTimeout(BodyError):
    """The body did not arrive within the timeout (a slow or stalled sender)."""


class BadJson(BodyError, ValueError):
    pass


class PostgresError(BotError, RuntimeError):
    pass
