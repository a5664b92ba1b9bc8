"""The terminal under `supportbot shell`: lines in from stdin, lines out to stdout.

stdin is read by a daemon thread with `os.read`, never with `asyncio.to_thread(readline)`:
`asyncio.run` joins the default executor's threads on its way out, so a thread blocked in
`readline` kept Ctrl-C waiting for Enter. A daemon thread is simply left behind at exit, and
`os.read` holds no lock that interpreter shutdown would wait for. A closed stdin (`<&-`, where
Python's `sys.stdin` is None) reads as an empty one.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import AsyncIterator
from typing import TextIO

MAX_LINE = 64 * 1024  # a longer line is cut into pieces this long


class Printer:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()

    def dim(self, text: str) -> None:
        self.line(f"\033[2m{text}\033[0m" if self.tty else f"  · {text}")

    def bot(self, text: str) -> None:
        self.line(f"supportbot> {text}")

    def staff(self, text: str) -> None:
        self.line(f"support team> {text}")

    def line(self, text: str) -> None:
        print(text, file=self.out, flush=True)


def stdin_fd() -> int | None:
    """The descriptor to read, or None when stdin is closed."""
    if sys.stdin is None:
        return None
    try:
        return sys.stdin.fileno()
    except (OSError, ValueError):  # replaced by an object without a descriptor, or closed
        return None


def _split(buf: bytes) -> tuple[list[bytes], bytes]:
    *done, rest = buf.split(b"\n")
    while len(rest) > MAX_LINE:
        done.append(rest[:MAX_LINE])
        rest = rest[MAX_LINE:]
    return done, rest


def _read_lines(fd: int, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None]) -> None:
    def put(item: str | None) -> bool:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: the shell has ended
            return False
        return True

    buf = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            if buf:
                put(buf.decode("utf-8", "replace"))
            put(None)
            return
        done, buf = _split(buf + chunk)
        for raw in done:
            if not put(raw.decode("utf-8", "replace")):
                return


async def lines(prompt: str, printer: Printer, fd: int | None = -1) -> AsyncIterator[str]:
    """Non-empty stdin lines, stripped; ends at EOF. `fd` -1 means this process's stdin."""
    fd = stdin_fd() if fd == -1 else fd
    if fd is None:
        return
    interactive = printer.tty and os.isatty(fd)
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    reader = threading.Thread(
        target=_read_lines, args=(fd, asyncio.get_running_loop(), queue), name="stdin", daemon=True
    )
    reader.start()
    while True:
        if interactive:
            print(prompt, end="", file=printer.out, flush=True)
        line = await queue.get()
        if line is None:
            return
        line = line.strip()
        if line:
            yield line
