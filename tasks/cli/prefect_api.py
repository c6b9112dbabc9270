"""The Prefect API a command-line run talks to: PREFECT_API_URL's server, or an embedded one.

With no PREFECT_API_URL, Prefect starts a local server process on the first
API call (its ephemeral mode) and waits `server.ephemeral.startup_timeout_seconds`
for it to answer, 20 s unless set (prefect/settings/models/server/ephemeral.py;
the wait loop is `SubprocessASGIServer.start` in prefect/server/api/server.py).
The first start on a fresh PREFECT_HOME creates and migrates its SQLite
database, which on a loaded 2-core machine took longer than that (3 of 4
tries, see PREFECT_NOTES.md), and the run then died with a page of
tracebacks. So agentmill's entry points start that server themselves, before
the flow, with time to spare unless the user set their own timeout, say what
is happening meanwhile, send the server's own output to a log file, and turn
a failure into one line that says what to do. The flow's first API call then
finds the server running: Prefect keeps one per process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
from prefect.server.api.server import SubprocessASGIServer
from prefect.settings import get_current_settings
from rich.console import Console

from tasks.cli.terminal import error, note, status
from tasks.common.errors import AgentmillError

# What the embedded server gets to start when the user has not said (Prefect: 20 s).
EMBEDDED_STARTUP_S = 120
HEALTH_TIMEOUT_S = 5.0
RUN_YOUR_OWN = (
    "start one yourself with `prefect server start` in another terminal, then "
    "`export PREFECT_API_URL=http://127.0.0.1:4200/api` and run this again"
)


class PrefectUnavailable(AgentmillError, RuntimeError):
    """No Prefect API to run on; the message says what to do."""


@dataclass(frozen=True)
class PrefectTarget:
    """Where runs go: a server at `url`, or an embedded one on the SQLite file `database`."""

    kind: Literal["server", "embedded", "none"]
    url: str = ""
    database: Path | None = None

    @property
    def fresh(self) -> bool:
        """An embedded server whose database does not exist yet: its first start sets it up."""
        return self.kind == "embedded" and self.database is not None and not self.database.exists()


def prefect_target() -> PrefectTarget:
    settings = get_current_settings()
    if settings.api.url:
        return PrefectTarget("server", url=settings.api.url.rstrip("/"))
    if not settings.server.ephemeral.enabled:
        return PrefectTarget("none")
    return PrefectTarget("embedded", database=_sqlite_file())


def _sqlite_file() -> Path | None:
    """The embedded server's database file, when it is SQLite (it is unless configured)."""
    url = get_current_settings().server.database.connection_url
    text = url.get_secret_value() if url is not None else ""
    _, sep, path = text.partition(":///")
    return Path(path) if sep and text.startswith("sqlite") and path != ":memory:" else None


def startup_timeout() -> tuple[int, bool]:
    """(seconds the embedded server gets, whether that is the user's own setting).

    A value set anywhere Prefect reads settings (environment, profile,
    prefect.toml) counts as the user's; only the bare default is raised.
    """
    ephemeral = get_current_settings().server.ephemeral
    if "startup_timeout_seconds" in ephemeral.model_fields_set:
        return ephemeral.startup_timeout_seconds, True
    return max(EMBEDDED_STARTUP_S, ephemeral.startup_timeout_seconds), False


def server_log() -> Path:
    return get_current_settings().home / "agentmill" / "embedded-server.log"


def check_server(url: str) -> str:
    """The server's version, or PrefectUnavailable saying how to reach one."""
    try:
        with httpx.Client(base_url=url, timeout=HEALTH_TIMEOUT_S) as http:
            http.get("/health").raise_for_status()
            version = http.get("/admin/version")
            version.raise_for_status()
            return str(version.json())
    except (httpx.HTTPError, ValueError) as exc:
        raise PrefectUnavailable(
            f"cannot reach the Prefect API at {url} ({type(exc).__name__}: {exc}); start that "
            "server (`prefect server start`), or unset PREFECT_API_URL to let agentmill start "
            "a local one"
        ) from None


def ensure_prefect_api(
    status: Callable[[str], contextlib.AbstractContextManager[object]],
    say: Callable[[str], object],
) -> PrefectTarget:
    """Make sure the run has a Prefect API: check PREFECT_API_URL's, or start the embedded one.

    While the embedded server starts, `status(message)` is entered (a spinner,
    or a printed line) to say what the wait is; `say` tells when it is ready.
    """
    target = prefect_target()
    if target.kind == "server":
        check_server(target.url)
        return target
    if target.kind == "none":
        raise PrefectUnavailable(
            "no Prefect API: PREFECT_API_URL is not set and the embedded server is turned off "
            "(PREFECT_SERVER_EPHEMERAL_ENABLED); " + RUN_YOUR_OWN
        )
    timeout, own = startup_timeout()
    message = "starting a local Prefect server"
    if target.fresh:
        message += "; the first start sets up its database (about half a minute)"
    started = time.monotonic()
    with status(message + " ..."):
        _start_embedded(timeout, own)
    say(f"local Prefect server ready ({time.monotonic() - started:.1f}s)")
    return target


class _OwnNotices(logging.Filter):
    """Drops Prefect's "Starting/Stopping temporary server" lines: we say it ourselves."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "temporary server on http" not in str(record.msg)


def api_ready(console: Console) -> bool:
    """`ensure_prefect_api` for a command: a spinner while it waits; False once it said why not."""
    try:
        ensure_prefect_api(lambda m: status(console, m), lambda m: note(console, m))
    except AgentmillError as exc:
        error(str(exc))
        return False
    return True


def _start_embedded(timeout: int, own: bool) -> None:
    # On the logger SubprocessASGIServer logs to ("prefect"): a filter there sees only
    # its own records, not those its children (flow and task runs) propagate.
    prefect_logger = logging.getLogger("prefect")
    if not any(isinstance(f, _OwnNotices) for f in prefect_logger.filters):
        prefect_logger.addFilter(_OwnNotices())
    log = server_log()
    log.parent.mkdir(parents=True, exist_ok=True)
    server = _LoggedServer()
    server.log_path = log
    try:
        server.start(timeout=timeout)
    except Exception as exc:
        _stop_quietly(server)
        setting = "your PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" if own else "its limit"
        reason = "did not answer" if "Timed out" in str(exc) else f"failed ({exc})".split("\n")[0]
        raise PrefectUnavailable(
            f"the local Prefect server {reason} within {timeout}s ({setting}; its log: {log}); "
            + RUN_YOUR_OWN
        ) from None


def _stop_quietly(server: SubprocessASGIServer) -> None:
    """Kill a server that never came up: SIGTERM mid-migration prints SQLite tracebacks."""
    process = server.server_process
    if process is not None and process.poll() is None:
        process.kill()
        process.wait(timeout=10)
    server.stop()


class _LoggedServer(SubprocessASGIServer):
    """Prefect's embedded server, with its output in a log file instead of the terminal.

    Prefect keeps one instance per port in `SubprocessASGIServer._instances`,
    so the flow's own `get_client()` later finds this one, already running.
    The server process inherits stdout and stderr; it is given the log file's
    descriptor for the moment it is spawned, which changes nothing else of
    how Prefect starts it.
    """

    log_path: Path | None = None

    def _run_uvicorn_command(self) -> subprocess.Popen[Any]:
        if self.log_path is None:
            return super()._run_uvicorn_command()
        with _std_streams_to(self.log_path):
            return super()._run_uvicorn_command()


@contextlib.contextmanager
def _std_streams_to(path: Path) -> Iterator[None]:
    """File descriptors 1 and 2 point at `path` inside the block (what a child inherits)."""
    saved = [os.dup(1), os.dup(2)]
    with path.open("wb") as log:
        try:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
