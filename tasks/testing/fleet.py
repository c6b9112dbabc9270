"""A small fleet on one machine: a Prefect server (PostgreSQL or SQLite), a process work
pool, build_app deployed to it, and N workers, each with its own PREFECT_HOME.

Tests and the benchmark use it the way a team runs agentmill on many machines:
every worker is a separate `prefect worker start` process that knows only the
API URL and what its environment says (the model endpoint, the shared result
storage); nothing of one worker's home is visible to another. Each worker
polls the pool's `default` queue and its own (`worker-<i>`), so a run can be
sent to any worker or to one in particular.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any
from uuid import UUID

from tasks.testing.postgres import PostgresCluster
from tasks.testing.prefect_api import stop
from tasks.testing.prefect_server import PrefectServer
from tasks.testing.repos import CHECKOUT

POOL = "fleet"
DEPLOYMENT = "build_app/build-app"
# Deployed from this checkout: the worker runs the flow from its own scratch working
# directory, so nothing ties a run to the machine that deployed it but the code.
_DEPLOY = (
    "from flows.build_app import build_app; "
    "build_app.from_source(source={source!r}, entrypoint='flows/build_app.py:build_app')"
    ".deploy(name='build-app', work_pool_name={pool!r}, print_next_steps=False)"
)


class Fleet:
    """`with Fleet(root, workers=2, env=...) as fleet:` then `await fleet.run(params)`.

    `env` reaches every worker and so every flow run (the model endpoint, the
    result storage setting); `database` is "postgres" (a throwaway cluster) or
    "sqlite" (the server's default, for comparison).
    """

    def __init__(
        self,
        root: Path,
        workers: int = 2,
        env: dict[str, str] | None = None,
        database: str = "postgres",
        services_off: tuple[str, ...] = (),
    ) -> None:
        self.root = root
        self.n_workers = workers
        self.extra_env = dict(env or {})
        self.database = database
        self.services_off = services_off
        self.postgres: PostgresCluster | None = None
        self.server: PrefectServer | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.homes: list[Path] = []

    @property
    def api_url(self) -> str:
        assert self.server is not None, "the fleet is not started"
        return self.server.api_url

    def env_for(self, home: Path) -> dict[str, str]:
        """A process's environment: its own PREFECT_HOME, the fleet's API and settings."""
        env = {
            **os.environ,
            "PREFECT_HOME": str(home),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            # Workers pick runs up within a second instead of ten.
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_WORKER_PREFETCH_SECONDS": "1",
            **self.extra_env,
        }
        env.pop("PREFECT_RESULTS_LOCAL_STORAGE_PATH", None)  # only what extra_env says
        return env

    def __enter__(self) -> Fleet:
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            url = None
            if self.database == "postgres":
                self.postgres = PostgresCluster().__enter__()
                self.postgres.create_database("prefect")
                url = self.postgres.database_url("prefect")
            self.server = PrefectServer(
                services_off=self.services_off, root=self.root, database_url=url
            ).__enter__()
            admin = self.env_for(self.root / "admin-home")
            self._cli(admin, "-m", "prefect", "work-pool", "create", POOL, "--type", "process")
            self._cli(admin, "-c", _DEPLOY.format(source=str(CHECKOUT), pool=POOL))
            for i in range(self.n_workers):
                # Each worker's own queue exists before it starts: a worker told to poll a
                # queue that does not exist polls none of its queues (measured: runs on
                # `default` stayed scheduled), until a run on that queue creates it.
                self._cli(admin, "-m", "prefect", "work-queue", "create", f"worker-{i}",
                          "--pool", POOL)  # fmt: skip
            for i in range(self.n_workers):
                self._start_worker(i)
            asyncio.run(self._workers_online())
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _cli(self, env: dict[str, str], *args: str) -> None:
        proc = subprocess.run(
            [sys.executable, *args], cwd=CHECKOUT, env=env, capture_output=True, text=True,
            timeout=180,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: {proc.stdout[-1500:]}\n{proc.stderr[-1500:]}")

    def _start_worker(self, i: int) -> None:
        home = self.root / f"worker-{i}"
        scratch = home / "scratch"
        scratch.mkdir(parents=True, exist_ok=True)
        self.homes.append(home)
        command = [
            sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--type",
            "process", "--work-queue", "default", "--work-queue", f"worker-{i}",
            "--name", f"worker-{i}",
        ]  # fmt: skip
        env = self.env_for(home)
        with (home / "worker.log").open("wb") as log:
            worker = subprocess.Popen(command, cwd=scratch, env=env, stdout=log, stderr=log)
        self.workers.append(worker)

    async def _workers_online(self, within_s: float = 180) -> None:
        """Wait until every worker has told the server it is online (its first heartbeat,
        sent as it starts polling): a run created before would wait for a worker's start-up,
        and a benchmark's wall(1) would count it."""
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.objects import WorkerStatus
        from prefect.settings import PREFECT_API_URL, temporary_settings

        want = {f"worker-{i}" for i in range(self.n_workers)}
        deadline = time.monotonic() + within_s
        with temporary_settings(updates={PREFECT_API_URL: self.api_url}):
            async with get_client() as client:
                while True:
                    workers = await client.read_workers_for_work_pool(POOL)
                    if want <= {w.name for w in workers if w.status == WorkerStatus.ONLINE}:
                        return
                    exited = [i for i, w in enumerate(self.workers) if w.poll() is not None]
                    if exited or time.monotonic() > deadline:
                        raise RuntimeError(
                            f"fleet workers not online in {within_s}s (exited: {exited}): "
                            + "".join(self.worker_log(i)[-1000:] for i in range(self.n_workers))
                        )
                    await asyncio.sleep(0.5)

    def worker_log(self, i: int) -> str:
        return (self.homes[i] / "worker.log").read_text(errors="replace")

    async def start(self, parameters: dict[str, Any], worker: int | None = None) -> UUID:
        """Create a run of build-app; on worker `worker`'s own queue, or on the shared one."""
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: self.api_url}):
            async with get_client() as client:
                deployment = await client.read_deployment_by_name(DEPLOYMENT)
                run = await client.create_flow_run_from_deployment(
                    deployment.id,
                    parameters=parameters,
                    work_queue_name=None if worker is None else f"worker-{worker}",
                )
                return run.id

    async def wait(self, run_ids: Iterable[UUID], within_s: float = 600) -> dict[UUID, Any]:
        """Wait until every run is final; their flow runs (the state says how they ended)."""
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        pending = set(run_ids)
        done: dict[UUID, Any] = {}
        deadline = time.monotonic() + within_s
        with temporary_settings(updates={PREFECT_API_URL: self.api_url}):
            async with get_client() as client:
                while pending:
                    for run_id in list(pending):
                        run = await client.read_flow_run(run_id)
                        if run.state is not None and run.state.is_final():
                            done[run_id] = run
                            pending.discard(run_id)
                    if pending and time.monotonic() > deadline:
                        raise TimeoutError(f"{len(pending)} fleet runs not final in {within_s}s")
                    if pending:
                        await asyncio.sleep(0.5)
        return done

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for worker in self.workers:
            stop(worker, (signal.SIGINT, signal.SIGINT))  # a process worker ignores SIGTERM
        self.workers = []
        if self.server is not None:
            self.server.__exit__(None, None, None)
            self.server = None
        if self.postgres is not None:
            self.postgres.__exit__(None, None, None)
            self.postgres = None
