"""A PostgreSQL server the chaos soak may stop and start again: a throwaway one it makes itself
(as `.ci/start-postgres` does: Debian's binaries, an unprivileged user, a temporary directory),
or an existing one given by its data directory.

Stopping uses `pg_ctl stop` (`fast`: clients are disconnected and in-flight transactions roll
back; `immediate`: no shutdown checkpoint, as after a crash); starting again reuses the options
the server was started with (`postmaster.opts`), so it comes back on the same port.
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import shlex
import shutil
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bot.errors import PostgresError


def _find_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    pg_ctl = found[-1] if found else shutil.which("pg_ctl")
    if not pg_ctl:
        raise PostgresError("no PostgreSQL server binaries (pg_ctl) found: apt-get install postgresql")
    return Path(pg_ctl).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_user() -> str | None:
    """The user the server runs as when we are root (PostgreSQL refuses to run as root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise PostgresError("running as root, and there is no postgres or nobody user to run the server as")


@dataclass
class Postgres:
    bin_dir: Path
    data_dir: Path
    port: int
    user: str | None = None
    options: list[str] = field(default_factory=list)  # the server's own options, for restarts
    owned: Path | None = None  # a throwaway server's directory, removed by close()

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    async def _run(self, *argv: str) -> str:
        cmd = [*(["runuser", "-u", self.user, "--"] if self.user else []), *argv]
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise PostgresError(f"{shlex.join(argv)} failed: {out.decode(errors='replace')[-500:]}")
        return out.decode(errors="replace")

    @classmethod
    async def throwaway(cls) -> Postgres:
        """initdb and start a private server on a free port. fsync is off (it is scratch, and the
        machine does not crash); synchronous_commit stays on, since `pg_ctl stop -m immediate`
        would otherwise lose transactions that reported their commit."""
        bin_dir, user = _find_bin(), _server_user()
        root = Path(tempfile.mkdtemp(prefix="supportbot-soak-pg-"))
        if user:
            shutil.chown(root, user)
        port = _free_port()
        options = ["-c", "listen_addresses=127.0.0.1", "-p", str(port), "-k", str(root)]
        options += ["-c", "fsync=off", "-c", "max_connections=300"]
        pg = cls(bin_dir, root / "data", port, user, options, owned=root)
        await pg._run(
            str(bin_dir / "initdb"), "-D", str(pg.data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--locale=C.UTF-8",
        )  # fmt: skip
        await pg.start()
        return pg

    @classmethod
    def existing(cls, data_dir: Path, *, bin_dir: Path | None = None, user: str | None = None) -> Postgres:
        """A running server, known by its data directory (its options are read from postmaster.opts)."""
        opts = shlex.split((data_dir / "postmaster.opts").read_text())[1:]
        options = [o for i, o in enumerate(opts) if o != "-D" and (i == 0 or opts[i - 1] != "-D")]
        port = int(options[options.index("-p") + 1]) if "-p" in options else 5432
        owner = pwd.getpwuid(data_dir.stat().st_uid).pw_name if os.geteuid() == 0 else None
        return cls(bin_dir or _find_bin(), data_dir, port, user or owner, options)

    async def start(self) -> None:
        log = self.data_dir.parent / "soak-postgres.log"
        await self._run(
            str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(log), "-w", "-t", "60",
            "-o", shlex.join(self.options), "start",
        )  # fmt: skip

    async def stop(self, mode: str = "fast") -> None:
        await self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-w", "-t", "60", "-m", mode, "stop")

    async def close(self) -> None:
        """Stop a throwaway server and remove its files (an existing one is left running)."""
        if self.owned is None:
            return
        try:
            await self.stop("fast")
        finally:
            shutil.rmtree(self.owned, ignore_errors=True)
