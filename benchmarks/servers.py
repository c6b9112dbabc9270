"""The Prefect servers the benchmark runs agentmill on, side by side, as people run them.

- embedded: no `PREFECT_API_URL`, so Prefect starts its own server process on
  the first flow call (SQLite in `PREFECT_HOME`, the services an ephemeral
  server runs: task-run recorder, event persister, automations). This
  is what the README's first command, `python -m flows.build_app ...`, uses.
- default: a plain `prefect server start` (SQLite, every service on), what a
  Prefect UI user runs.
- tuned: the same with eight of its ten services off. Task runs and events
  are then not recorded (the UI shows neither), so nobody should run it for
  real; it is kept, labelled, because the earlier benchmark measured it.
- postgres: a plain `prefect server start` (every service on) on a throwaway
  PostgreSQL cluster (tasks.testing.postgres), what a fleet runs. Where
  PostgreSQL is not installed, `serve` raises `PostgresMissing` (a fix-it
  error) and the harness reports the row as not measured.

Each group of runs gets the environment of its configuration from
`ServerHandle.env`; the embedded configuration shares one `PREFECT_HOME`
between its groups, so its database is migrated once, as on a user's machine.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.testing.postgres import PostgresCluster, PostgresMissing, postgres_bin
from tasks.testing.prefect_server import ALL_SERVICES, QUIET_OFF, PrefectServer

# What a Prefect server logs for each request it answers 503 (with
# PREFECT_API_LOG_RETRYABLE_ERRORS on); on SQLite, "database is locked".
RETRYABLE_LINE = "Encountered retryable exception in request"
# The services an ephemeral server runs (prefect/server/api/server.py: RunInEphemeralServers;
# the triggers setting covers the automations' actions too).
EPHEMERAL_SERVICES = ("TASK_RUN_RECORDER", "EVENT_PERSISTER", "TRIGGERS")


@dataclass(frozen=True)
class ServerConfig:
    """One way of running the Prefect server; `services_off is None` means embedded."""

    name: str
    label: str
    services_off: tuple[str, ...] | None
    records: bool = True  # task runs and events reach the database (the UI shows them)
    database: str = "sqlite"  # or "postgres": a throwaway cluster `serve` starts and stops

    @property
    def embedded(self) -> bool:
        return self.services_off is None

    def missing(self) -> str | None:
        """Why this machine cannot start this configuration's server (None: it can)."""
        if self.database != "postgres":
            return None
        try:
            postgres_bin()
        except PostgresMissing as error:
            return str(error)
        return None

    @property
    def services_on(self) -> tuple[str, ...]:
        if self.services_off is None:
            return EPHEMERAL_SERVICES
        return tuple(s for s in ALL_SERVICES if s not in self.services_off)


CONFIGS: dict[str, ServerConfig] = {
    "embedded": ServerConfig(
        "embedded", "the server the command line starts (SQLite, its services on)", None
    ),
    "default": ServerConfig("default", "`prefect server start` (SQLite, every service on)", ()),
    "tuned": ServerConfig(
        "tuned",
        "`prefect server start` with 8 of 10 services off (task runs and events not recorded)",
        QUIET_OFF,
        records=False,
    ),
    "postgres": ServerConfig(
        "postgres",
        "`prefect server start` on PostgreSQL (every service on)",
        (),
        database="postgres",
    ),
}


@dataclass
class ServerHandle:
    """A running (or, for embedded, a to-be-started) server and what a group's process needs."""

    config: ServerConfig
    env: dict[str, str]
    server: PrefectServer | None = None
    external: bool = False
    start_s: float | None = None
    logs: list[Path] = field(default_factory=list)  # process logs holding an embedded server's

    def retryable_errors(self) -> int | None:
        """Requests the server answered 503 so far; None when its log is not ours to read."""
        if self.server is not None:
            return self.server.retryable_errors()
        if self.external:
            return None
        return sum(_count(path) for path in self.logs)

    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "label": self.config.label,
            "services_on": [s.lower() for s in self.config.services_on],
            "records_task_runs_and_events": self.config.records,
            "external": self.external,
            "start_s": None if self.start_s is None else round(self.start_s, 2),
            "retryable_errors": self.retryable_errors(),
        }
        if self.server is not None:
            info["peak_rss_mb"] = self.server.peak_rss_mb()
        return info


def _count(path: Path) -> int:
    try:
        return path.read_text(errors="replace").count(RETRYABLE_LINE)
    except OSError:
        return 0


@contextlib.contextmanager
def serve(config: ServerConfig, root: Path, api_url: str | None = None) -> Iterator[ServerHandle]:
    """Start (or point at) the server of `config` for the groups run inside the block.

    `api_url` stands in for a private server (the test suite passes its own);
    the embedded configuration never takes one: Prefect starts it per process.
    """
    root.mkdir(parents=True, exist_ok=True)
    if config.embedded:
        home = root / "embedded-home"
        home.mkdir()
        env = {
            "PREFECT_HOME": str(home),
            # Migrating a fresh database can take longer than Prefect's 20 s default
            # on two busy cores; the command line's own runs are measured with its own.
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",
            "PREFECT_API_LOG_RETRYABLE_ERRORS": "true",
        }
        try:
            yield ServerHandle(config, env)
        finally:
            shutil.rmtree(home, ignore_errors=True)
        return
    if api_url is not None:
        yield ServerHandle(config, {"PREFECT_API_URL": api_url}, external=True)
        return
    assert config.services_off is not None
    with contextlib.ExitStack() as stack:
        database_url = None
        if config.database == "postgres":
            cluster = stack.enter_context(PostgresCluster())
            cluster.create_database("prefect")
            database_url = cluster.database_url("prefect")
        server = stack.enter_context(
            PrefectServer(services_off=config.services_off, root=root, database_url=database_url)
        )
        yield ServerHandle(
            config, {"PREFECT_API_URL": server.api_url}, server=server, start_s=server.start_s
        )
