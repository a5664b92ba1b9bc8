"""Email addresses in untrusted text, found in time linear in the text.

`local@domain.tld` as the pattern `[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\\.[A-Za-z]{2,}` finds it, with
the same matches (leftmost, longest, not overlapping), but without its quadratic cost: that
pattern tries every position as the start of a local part and rescans the run of local-part
characters after it, so 40,000 characters without an `@` took a second. Here the search starts
at each `@` (the domain after it is a run no later `@` shares), and the local part is the run
of local-part characters just before it, measured with `str.rstrip`.
"""

from __future__ import annotations

import re
import string

LOCAL_CHARS = string.ascii_letters + string.digits + "._%+-"
_AT_DOMAIN = re.compile(r"@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


def spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every email address in `text`, in order."""
    found: list[tuple[int, int]] = []
    floor = 0  # the end of the last address: the next one's local part starts at or after it
    after_at = 0  # just past the previous @: a local part never holds an @
    for m in _AT_DOMAIN.finditer(text):
        head = text[max(floor, after_at) : m.start()]
        local = len(head) - len(head.rstrip(LOCAL_CHARS))
        if local:
            found.append((m.start() - local, m.end()))
            floor = m.end()
        after_at = m.start() + 1
    return found


def hide(text: str, replacement: str = "(email hidden)") -> str:
    """`text` with every email address replaced."""
    pieces: list[str] = []
    last = 0
    for start, end in spans(text):
        pieces += [text[last:start], replacement]
        last = end
    pieces.append(text[last:])
    return "".join(pieces)
