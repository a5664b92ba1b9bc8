"""Credential shapes: what must never be published in a help-center article nor said to a customer.

The import refuses an article that holds one (`kb import` names the file and the kind, never the
value), and the sanitizer withholds any that reaches a reply. Shapes: Slack tokens (`xoxb-`,
`xoxp-`, `xapp-`, …), Anthropic and OpenAI keys (`sk-ant-`, `sk-`), private keys (`-----BEGIN …
PRIVATE KEY-----`), AWS access key ids and secret keys, GitHub and Google API tokens, Stripe live
keys, a password in a URL (`scheme://user:password@host`), and a long value after `token=`,
`secret=`, `password=`, `api_key:` and the like (as in a `.env` file or a config dump).

Every pattern is linear-time: bounded repeats, each anchored at the start of its run.
"""

from __future__ import annotations

import re

# (kind, pattern) in the order they are tried
SHAPES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("a private key", re.compile(r"-----BEGIN[A-Z ]{0,40} PRIVATE KEY(?: BLOCK)?-----")),
    ("a Slack token", re.compile(r"(?<![\w-])(?:xox[abpoesr]-[A-Za-z0-9-]{10,250}|xapp-\d-[A-Za-z0-9-]{10,250})")),
    ("an Anthropic API key", re.compile(r"(?<![\w-])sk-ant-[A-Za-z0-9_-]{20,250}")),
    ("an API secret key", re.compile(r"(?<![\w-])sk-(?:proj-|live-)?[A-Za-z0-9_-]{32,250}")),
    (
        "an AWS access key id",
        re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA)[A-Z0-9]{16}(?![A-Z0-9])"),
    ),
    ("a GitHub token", re.compile(r"(?<!\w)(?:gh[pousr]_[A-Za-z0-9]{36,250}|github_pat_[A-Za-z0-9_]{50,250})")),
    ("a Google API key", re.compile(r"(?<![\w-])AIza[0-9A-Za-z_-]{35}(?![\w-])")),
    ("a Stripe live key", re.compile(r"(?<!\w)(?:sk|rk)_live_[0-9A-Za-z]{16,250}")),
    ("a password in a URL", re.compile(r"(?<![\w+.-])[A-Za-z][A-Za-z0-9+.-]{1,20}://[^\s/:@]{1,64}:[^\s/@]{3,128}@")),
    (
        "a secret value",
        re.compile(
            r"(?<![A-Za-z])(?:token|secret|password|passwd|pwd|api[_-]?key|apikey|access[_-]?key|private[_-]?key"
            r"|client[_-]?secret|signing[_-]?secret|aws_secret_access_key)[\"']?[ \t]{0,4}[=:][ \t]{0,4}[\"']?"
            r"(?=[^\s\"'<>]{0,200}\d)(?=[^\s\"'<>]{0,200}[A-Za-z])[^\s\"'<>]{12,200}",
            re.IGNORECASE,
        ),
    ),
)
WITHHELD = "[withheld]"


def kinds(text: str) -> list[str]:
    """The kinds of credential `text` holds, each once, in SHAPES order."""
    return [kind for kind, pattern in SHAPES if pattern.search(text)]


def withhold(text: str) -> tuple[str, list[str]]:
    """`text` with every credential replaced by WITHHELD, and the kinds found."""
    found: list[str] = []
    for kind, pattern in SHAPES:
        text, n = pattern.subn(WITHHELD, text)
        if n:
            found.append(kind)
    return text, found
