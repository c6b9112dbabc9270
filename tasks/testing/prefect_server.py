"""A private `prefect server start` for tests and the benchmark, in its own process and home.

Its own process keeps the server's memory and CPU out of the flow process's
figures (the server's peak RSS is reported on its own); its own home means a
fresh SQLite database, so no earlier run's state is measured.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType

from tasks.testing.loopback import free_port

# Server services, by the name of their PREFECT_SERVER_SERVICES_<NAME>_ENABLED setting.
ALL_SERVICES = (
    "CANCELLATION_CLEANUP",
    "EVENT_PERSISTER",
    "FOREMAN",
    "LATE_RUNS",
    "SCHEDULER",
    "PAUSE_EXPIRATIONS",
    "REPOSSESSOR",
    "CLEANUP_RECONCILER",
    "TASK_RUN_RECORDER",
    "TRIGGERS",
)
# Off for a private server that only runs ad-hoc builds: nothing is scheduled,
# nothing waits on automations, and the task-run recorder and event persister
# are the SQLite writers that make concurrent flow-run creation fail with
# "database is locked" (see shared notes). Task runs then do not show in the UI.
QUIET_OFF = tuple(s for s in ALL_SERVICES if s not in ("REPOSSESSOR", "CLEANUP_RECONCILER"))


def quiet_env() -> dict[str, str]:
    """Telemetry off for every Prefect process the benchmark starts."""
    return {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}


class PrefectServer:
    """`with PrefectServer(services_off=QUIET_OFF) as server:` then use `server.api_url`.

    `database_url` points it at PostgreSQL (the fleet's server) instead of SQLite.
    """

    def __init__(
        self,
        services_off: tuple[str, ...] = QUIET_OFF,
        root: Path | None = None,
        settings: dict[str, str] | None = None,
        database_url: str | None = None,
    ) -> None:
        self.services_off = services_off
        self.settings = dict(settings or {})  # more server settings, e.g. a scheduler loop
        # None: SQLite in the server's home; else a PostgreSQL URL (tasks.testing.postgres).
        self.database_url = database_url
        self.services_on = tuple(s for s in ALL_SERVICES if s not in services_off)
        self._root = Path(tempfile.mkdtemp(prefix="agentmill-bench-prefect-", dir=root))
        self.home = self._root / "home"
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.start_s = 0.0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = self._root / "server.log"

    def __enter__(self) -> PrefectServer:
        env = {
            **os.environ,
            **quiet_env(),
            "PREFECT_HOME": str(self.home),
            "PREFECT_UI_ENABLED": "false",
            # Log each "database is locked" (answered 503, retried by the client after
            # about 2 s) so the report can count them.
            "PREFECT_API_LOG_RETRYABLE_ERRORS": "true",
            **{f"PREFECT_SERVER_SERVICES_{name}_ENABLED": "false" for name in self.services_off},
            **self.settings,
        }
        if self.database_url:
            env["PREFECT_API_DATABASE_CONNECTION_URL"] = self.database_url
        env.pop("PREFECT_API_URL", None)
        started = time.perf_counter()
        with self._log.open("wb") as log:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "prefect",
                    "server",
                    "start",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 120
        while not self._healthy():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self._stop()
                raise RuntimeError(
                    f"the benchmark's Prefect server did not start: {self._log.read_text()[-2000:]}"
                )
            time.sleep(0.2)
        self.start_s = time.perf_counter() - started
        return self

    def _healthy(self) -> bool:
        try:
            url = f"{self.api_url}/health"  # always http://127.0.0.1
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310
                return bool(response.status == 200)
        except OSError:
            return False

    @property
    def pid(self) -> int | None:
        """The `prefect server start` process (the benchmark reads its CPU time)."""
        return None if self._proc is None else self._proc.pid

    def peak_rss_mb(self) -> float | None:
        """The server process's peak resident memory (VmHWM), while it still runs."""
        if self._proc is None:
            return None
        try:
            status = Path(f"/proc/{self._proc.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return None

    def log_text(self) -> str:
        try:
            return self._log.read_text(errors="replace")
        except OSError:
            return ""

    def retryable_errors(self) -> int:
        """How many requests the server answered 503 (on SQLite: "database is locked")."""
        return self.log_text().count("Encountered retryable exception in request")

    def _stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop()
        shutil.rmtree(self._root, ignore_errors=True)
