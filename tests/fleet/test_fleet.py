"""A fleet on one machine: PostgreSQL, a Prefect server on it, a process pool, two workers.

One fleet for the module (its PostgreSQL cluster, server and workers start
once): each worker has its own PREFECT_HOME and scratch directory and sees
the model only as the fake Messages API on loopback, and the agents' results
only through one storage block both load by name. Marked
integration; run alone with `pytest tests/fleet -m integration`.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect.client.schemas.objects import StateType

from tasks.testing import postgres
from tasks.testing.fleet import Fleet
from tasks.testing.messages_api import FakeMessagesAPI
from tests.conftest import FAKE_KEY

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not postgres.available(), reason="apt-get install -y postgresql"),
]

# A storage block both workers load by name (Prefect's default_storage_block setting): a
# LocalFileSystem on a path both see stands in for a shared mount; RemoteFileSystem
# (s3://, gs://, ...) takes the same setting, but refuses a file:// base path.
STORAGE_BLOCK = "local-file-system/fleet-cache"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeMessagesAPI]:
    with FakeMessagesAPI() as api:
        yield api


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, fake: FakeMessagesAPI) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("fleet")
    env = {
        "ANTHROPIC_API_KEY": FAKE_KEY,
        "ANTHROPIC_BASE_URL": fake.base_url,
        # Every worker's agent results go to one fsspec storage block (Prefect's own setting).
        "PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK": STORAGE_BLOCK,
    }
    with Fleet(root, workers=2, env=env) as fleet:
        _save_storage_block(fleet, root / "shared-results")
        yield fleet


def _save_storage_block(fleet: Fleet, basepath: Path) -> None:
    from prefect.filesystems import LocalFileSystem
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: fleet.api_url}):
        LocalFileSystem(basepath=str(basepath)).save("fleet-cache", overwrite=True)


def _files(workdir: Path) -> list[str]:
    out = subprocess.run(
        ["git", "ls-files"], cwd=workdir, check=True, capture_output=True, text=True
    ).stdout
    return sorted(out.splitlines())


def _run(fleet: Fleet, params: dict[str, Any], worker: int | None = None) -> Any:
    async def go() -> Any:
        run_id = await fleet.start(params, worker=worker)
        return (await fleet.wait([run_id]))[run_id]

    return asyncio.run(go())


def test_a_build_on_worker_a_reruns_on_worker_b_with_no_model_request(
    fleet: Fleet, fake: FakeMessagesAPI, tmp_path: Path, unique_idea: str
) -> None:
    params = {"idea": unique_idea, "provider": "anthropic"}
    first = _run(fleet, {**params, "workdir": str(tmp_path / "a")}, worker=0)
    assert first.state.type == StateType.COMPLETED, first.state.message
    asked = len(fake.requests)
    assert asked > 32  # every agent asked the model at least once

    second = _run(fleet, {**params, "workdir": str(tmp_path / "b")}, worker=1)
    assert second.state.type == StateType.COMPLETED, second.state.message
    assert len(fake.requests) == asked  # worker B read every agent's result from the shared block
    assert _files(tmp_path / "b") == _files(tmp_path / "a")  # and restored every file from it
    # Each ran where it was sent, and neither kept a result in its own home.
    assert str(first.id) in fleet.worker_log(0) and str(second.id) in fleet.worker_log(1)
    for home in fleet.homes:
        assert not (home / "storage").exists() or not any((home / "storage").iterdir())
    assert any((fleet.root / "shared-results").iterdir())


def _small_team(fleet: Fleet, name: str) -> None:
    """A 10-role team without checks, saved on the fleet's server (eight builds stay cheap)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from benchmarks.teams import generated_team

    team = generated_team(10)
    team.verify = False
    with temporary_settings(updates={PREFECT_API_URL: fleet.api_url}):
        team.save(name, overwrite=True)


async def _task_runs_of(fleet: Fleet, run_id: Any, want: int) -> int:
    """The task runs the server recorded under a build's phase subflows (polled: the
    task-run recorder writes them from events, a moment after they happen)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterParentFlowRunId,
    )
    from prefect.settings import PREFECT_API_URL, temporary_settings

    count = 0
    with temporary_settings(updates={PREFECT_API_URL: fleet.api_url}):
        async with get_client() as client:
            phases = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run_id])
                )
            )
            ids = [p.id for p in phases]
            for _ in range(60):
                count = len(
                    await client.read_task_runs(
                        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)), limit=200
                    )
                )
                if count >= want:
                    break
                await asyncio.sleep(0.5)
    return count


def test_eight_builds_at_once_through_the_deployment_all_complete_and_are_recorded(
    fleet: Fleet, tmp_path: Path
) -> None:
    from datetime import UTC, datetime, timedelta

    from tasks.testing.prefect_api import agentmill_events

    _small_team(fleet, "fleet-ten")
    since = datetime.now(UTC) - timedelta(seconds=5)
    remote = tmp_path / "remote.git"  # empty: every build starts its branch from nothing
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)

    async def eight() -> dict[Any, Any]:
        ids = [
            await fleet.start(
                {
                    "idea": f"fleet build {i} ({tmp_path.name})",
                    "repo_url": str(remote),
                    "branch": f"agentmill/build-{i}",
                    "team": "fleet-ten",
                    "provider": "offline",
                }
            )
            for i in range(8)
        ]
        return await fleet.wait(ids)

    runs = asyncio.run(eight())
    assert [r.state.type for r in runs.values()] == [StateType.COMPLETED] * 8
    taken = [sum(str(run_id) in fleet.worker_log(i) for run_id in runs) for i in (0, 1)]
    print(f"runs per worker: {taken}")  # whichever polls first takes what is scheduled
    assert sum(taken) >= 8

    async def recorded() -> None:
        for run_id in runs:
            # 10 agents started and completed, 5 phases committed: the event persister is on
            await agentmill_events(fleet.api_url, since, str(run_id), want=10 * 2 + 5)
            assert await _task_runs_of(fleet, run_id, want=10) >= 10

    asyncio.run(recorded())
    for i in range(8):  # each build's five phases pushed to its own branch
        log = subprocess.run(
            ["git", "--git-dir", str(remote), "rev-list", f"refs/heads/agentmill/build-{i}"],
            check=True, capture_output=True, text=True,
        ).stdout.split()  # fmt: skip
        assert len(log) == 5
    assert fleet.server is not None
    log = fleet.server.log_text()
    assert "database is locked" not in log
    assert fleet.server.retryable_errors() == 0  # no 503, so no client back-off


def test_the_benchmark_measures_agentmill_on_the_fleets_postgresql_server(
    fleet: Fleet, tmp_path: Path
) -> None:
    """benchmarks/servers.py's postgres configuration, on this module's server (its cluster
    is not started twice): the row has the figures every configuration has, and the server
    recorded each run's task runs and events (the harness waited for them)."""
    from benchmarks.fake_api import BenchMessagesAPI
    from benchmarks.run import SERVER_FIGURES, Bench, Options, measure_server

    options = Options(
        roles=8, scales=(), latency_scale=0.05, configs=("default", "postgres"), headline="default",
        api_urls={"postgres": fleet.api_url}, samples=1, cli_samples=1, cli_fresh=False,
        fleet=False, caching=False, verification=False,
    )  # fmt: skip
    with BenchMessagesAPI() as api:
        row = measure_server(Bench(api, tmp_path, options), "postgres")
    assert set(row) >= set(SERVER_FIGURES)
    assert row["label"].endswith("on PostgreSQL (every service on)")
    assert row["records_task_runs_and_events"] is True
    assert row["recorded_after_s"] is not None  # task runs and the final event reached it
    assert row["cached_rerun_requests"] == 0
    assert row["wall_over_critical"] >= 1 and row["overhead_ms_per_task"] > 0
    assert row["http_503"] is None  # an external server's log is not the harness's to read
    assert fleet.server is not None and fleet.server.retryable_errors() == 0
    (cli,) = row["cli_runs"]
    assert cli["exit_code"] == 0, cli.get("error")
    assert 0 < row["start_to_first_request_s"] <= cli["start_to_summary_s"]
