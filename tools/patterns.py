"""Patterns run on untrusted text (customers' and the model's words), written once and linear-time.

Each pattern is anchored at the start of its run of characters by a lookbehind, so the engine
gives up at once at every position inside a run instead of rescanning it: the work grows with the
text, not with its square, whatever the input.
"""

from __future__ import annotations

import re

# name@domain.tld; the local part starts where the run of local-part characters starts
EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}"  # the local part, from the start of its run
    r"@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8}\.[A-Za-z]{2,24}\b"  # the domain, label by label
)
