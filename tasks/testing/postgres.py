"""A throwaway PostgreSQL cluster on loopback, for a Prefect server that many workers share.

Debian's `postgresql` package (`apt-get install -y postgresql`) ships the
server binaries in /usr/lib/postgresql/<major>/bin without putting them on
PATH; they are found there. `initdb` refuses to run as root, so as root the
cluster is created and run as the package's `postgres` user (`runuser`).
The cluster listens on 127.0.0.1 only (no Unix socket), trusts loopback
connections from its one user, and is stopped by its postmaster's pid and
deleted on exit.

    with PostgresCluster() as pg, PrefectServer(database_url=pg.database_url("prefect")):
        ...
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from tasks.common.errors import AgentmillError
from tasks.testing.loopback import free_port

PG_ROOT = Path("/usr/lib/postgresql")
SYSTEM_USER = "postgres"  # Debian's package creates it; initdb will not run as root
DB_USER = "agentmill"


class PostgresMissing(AgentmillError, RuntimeError):
    """The PostgreSQL server binaries are not installed."""


def postgres_bin() -> Path:
    """The newest installed major version's bin directory, or a fix-it error.

    Not `which initdb`: a wrapper on PATH may stand in for it without the other tools.
    """
    versions = sorted(
        (p for p in PG_ROOT.glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not versions:
        raise PostgresMissing(
            "PostgreSQL is not installed: `apt-get install -y postgresql` (Debian/Ubuntu) "
            f"puts its server in {PG_ROOT}/<version>/bin"
        )
    return versions[-1]


def available() -> bool:
    try:
        postgres_bin()
    except PostgresMissing:
        return False
    return True


class PostgresCluster:
    """`with PostgresCluster() as pg:` then `pg.database_url("prefect")` for Prefect."""

    def __init__(self) -> None:
        self.bin = postgres_bin()
        # In the system's temp directory: the `postgres` user must reach it, and a
        # test's tmp_path (mode 0700, root's) is out of its reach.
        self._root = Path(tempfile.mkdtemp(prefix="agentmill-pg-"))
        self.data = self._root / "data"
        self.port = free_port()
        self._log = self._root / "postgres.log"
        self._as_root = os.geteuid() == 0
        self._pid: int | None = None
        self._password = secrets.token_hex(16)  # a loopback cluster that lives for one session

    @property
    def pid(self) -> int | None:
        """The postmaster, parent of every backend (the benchmark reads their CPU time)."""
        return self._pid

    def database_url(self, database: str) -> str:
        """The SQLAlchemy URL Prefect's PREFECT_API_DATABASE_CONNECTION_URL takes."""
        return f"postgresql+asyncpg://{DB_USER}:{self._password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> None:
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", DB_USER, name)

    def __enter__(self) -> PostgresCluster:
        if self._as_root:
            user = pwd.getpwnam(SYSTEM_USER)
            os.chown(self._root, user.pw_uid, user.pw_gid)
        password_file = self._root / "password"
        password_file.write_text(self._password + "\n")
        if self._as_root:
            os.chown(password_file, pwd.getpwnam(SYSTEM_USER).pw_uid, -1)
        try:
            self._run(
                "initdb", "-D", str(self.data), "-U", DB_USER, "--pwfile", str(password_file),
                "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync",
            )  # fmt: skip
            # Loopback only, no Unix socket (its default directory may not exist or be
            # writable), fsync off: a throwaway cluster trades durability for speed.
            options = (
                f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories='' "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=200"
            )
            self._run(
                "pg_ctl", "-D", str(self.data), "-l", str(self._log), "-o", options, "-w",
                "-t", "60", "start",
            )  # fmt: skip
            self._pid = int((self.data / "postmaster.pid").read_text().splitlines()[0])
        except BaseException:
            self._stop()
            raise
        return self

    def _run(self, program: str, *args: str) -> str:
        command = [str(self.bin / program), *args]
        if self._as_root:
            command = ["runuser", "-u", SYSTEM_USER, "--", *command]
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PGPASSWORD": self._password,
            "LC_ALL": "C.UTF-8",
        }
        proc = subprocess.run(
            command, env=env, cwd=self._root, capture_output=True, text=True, timeout=120
        )
        if proc.returncode != 0:
            log = self._log.read_text(errors="replace")[-1500:] if self._log.exists() else ""
            raise RuntimeError(
                f"{program} failed ({proc.returncode}): {proc.stderr[-1500:]}{proc.stdout[-500:]}"
                f"\n{log}"
            )
        return proc.stdout

    def _stop(self) -> None:
        """Stop the postmaster by its pid: SIGINT is PostgreSQL's fast shutdown."""
        if self._pid is None:
            return
        pid, self._pid = self._pid, None
        try:
            os.kill(pid, signal.SIGINT)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop()
        shutil.rmtree(self._root, ignore_errors=True)
