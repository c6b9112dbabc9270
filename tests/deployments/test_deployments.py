"""The Prefect UI path for real: a fresh server, `prefect deploy --all`, a worker, runs via the API.

Starts its own Prefect server (own PREFECT_HOME, free loopback port, every
service on, the scheduler's loop shortened), deploys prefect.yaml to a
process work pool with no block saved or even registered, starts a worker,
and drives runs through the API as the UI does: build-app with no key
(offline), then with an AnthropicCredentials block saved and rotated (the
runs pick it up with no redeploy, and no record the API returns holds the
key), through the approval gate, and the triage schedule turned on (the
scheduler creates runs the worker completes). Run alone with
`pytest -m integration`.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.schedules import IntervalSchedule
from prefect.settings import PREFECT_API_URL, temporary_settings

from blocks import AgentTeam, AnthropicCredentials, GitHubCredentials
from tasks.build.offline_script import REQUESTS_PER_AGENT as PER_AGENT
from tasks.testing.github_api import FakeGitHub
from tasks.testing.messages_api import FakeMessagesAPI
from tasks.testing.prefect_api import agentmill_events, stop
from tasks.testing.prefect_server import PrefectServer
from tasks.testing.repos import CHECKOUT, git, init_repo
from tasks.testing.teams import PLANNER_AND_BUILDER

pytestmark = pytest.mark.integration

ROOT = CHECKOUT
KEYS = (
    "sk-ant-api03-DEPLOYTEST-1111111111111111111111",
    "sk-ant-api03-DEPLOYTEST-2222222222222222",
)
TOKEN = "ghp_DEPLOYTEST000000000000000000000000000"
REPO = "acme/widgets"


def _cli(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "prefect", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, (
        f"prefect {' '.join(args)}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    )
    return proc.stdout


@pytest.fixture(scope="module")
def prefect_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A fresh server and a process worker with prefect.yaml deployed; stopped at the end."""
    home = tmp_path_factory.mktemp("prefect-ui")
    server = PrefectServer(
        services_off=(),  # every service on: events are stored, schedules fire
        root=home,
        settings={
            "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "1",
            # A run queued behind triage's one-at-a-time limit is offered again after this
            # long; at 1 s, queued runs resubmitted every second swamped SQLite (503s).
            "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "5",
        },
    )
    env = {
        **os.environ,
        "PREFECT_HOME": str(server.home),
        "PREFECT_API_URL": server.api_url,
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "1",
        "AGENTMILL_REPO": REPO,  # what `prefect deploy` fills triage-issues' repo from
    }
    for secret in ("ANTHROPIC_API_KEY", "GITHUB_TOKEN"):
        assert secret not in env  # conftest removed them: the worker has no key either
    worker: subprocess.Popen[bytes] | None = None
    with server:
        try:
            _cli(env, "work-pool", "create", "local", "--type", "process")
            _cli(env, "--no-prompt", "deploy", "--all")  # no block exists, none is registered
            worker = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "prefect",
                    "worker",
                    "start",
                    "--pool",
                    "local",
                    "--type",
                    "process",
                ],
                cwd=ROOT,
                env=env,
                stdout=open(home / "worker.log", "wb"),  # noqa: SIM115 - lives as long as the worker
                stderr=subprocess.STDOUT,
            )
            yield env
        finally:
            if worker is not None:
                stop(worker, (signal.SIGINT, signal.SIGINT))  # a process worker ignores SIGTERM


def _api(env: dict[str, str]) -> Any:
    return temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]})


async def _start(env: dict[str, str], parameters: dict[str, Any]) -> UUID:
    """A run of build-app with these parameters, as the UI's Run button creates it."""
    async with get_client() as client:
        deployment = await client.read_deployment_by_name("build_app/build-app")
        run = await client.create_flow_run_from_deployment(deployment.id, parameters=parameters)
        return run.id


async def _wait_for(run_id: UUID, states: set[StateType], timeout: float = 150) -> FlowRun:
    async with get_client() as client:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = await client.read_flow_run(run_id)
            if run.state and run.state.type in states:
                return run
            if run.state and run.state.is_final():
                raise AssertionError(f"flow run ended {run.state.type}: {run.state.message}")
            await asyncio.sleep(0.5)
    raise AssertionError(f"flow run did not reach {states} within {timeout}s")


def _git(workdir: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=workdir, check=True, capture_output=True, text=True
    ).stdout.strip()


def test_a_fresh_server_with_no_block_builds_offline_on_a_worker(
    prefect_ui: dict[str, str], tmp_path: Path
) -> None:
    """What a user with no key and no token gets: every default, the offline model, a report."""
    workdir = tmp_path / "app"
    since = datetime.now(UTC) - timedelta(seconds=5)
    params = {"idea": "A todo app, deployed", "workdir": str(workdir)}  # provider: auto

    async def scenario() -> tuple[FlowRun, list[Any], list[dict[str, Any]]]:
        async with get_client() as client:
            blocks = await client.read_block_documents()
        assert not [b for b in blocks if b.block_type and "agentmill" in b.block_type.slug]
        run_id = await _start(prefect_ui, params)
        run = await _wait_for(run_id, {StateType.COMPLETED})
        async with get_client() as client:
            artifacts = [a for a in await client.read_artifacts() if a.flow_run_id == run_id]
            deployment = await client.read_deployment_by_name("build_app/build-app")
        assert deployment.parameter_openapi_schema is not None
        properties = deployment.parameter_openapi_schema["properties"]
        for field in ("idea", "team", "provider", "budget_usd", "workdir", "approve_plan"):
            assert properties[field].get("description"), field  # the UI form explains every field
        assert properties["credentials"]["default"] == "anthropic"  # a block's name, no secret
        assert not deployment.job_variables.get("env")  # nothing injected into the worker's env
        # 33 agents (the 32 roles and one fix agent) start and complete; 5 phases commit
        events = await agentmill_events(
            prefect_ui["PREFECT_API_URL"], since, str(run_id), want=33 * 2 + 5
        )
        return run, artifacts, events

    with _api(prefect_ui):
        run, artifacts, events = asyncio.run(scenario())

    shas = _git(workdir, "log", "--reverse", "--format=%H").split()
    assert len(shas) == 5 and _git(workdir, "status", "--porcelain") == ""
    report = next(a for a in artifacts if a.key == "agentmill-run-report")
    assert str(run.id) in str(report.data) and "OFFLINE MODEL" in str(report.data)
    progress = next(a for a in artifacts if a.key == "agentmill-progress")
    assert float(str(progress.data)) == 100.0

    mine = [
        e
        for e in events
        if any(r.get("prefect.resource.id") == f"prefect.flow-run.{run.id}" for r in e["related"])
    ]
    names = [e["event"] for e in mine]
    # the 32 roles and the fix agent the offline model's bug calls for
    assert (
        names.count("agentmill.agent.started") == 33
        and names.count("agentmill.agent.completed") == 33
    )
    committed = [e for e in mine if e["event"] == "agentmill.phase.committed"]
    assert sorted(e["resource"]["agentmill.commit"] for e in committed) == sorted(shas)
    done = next(
        e
        for e in mine
        if e["event"] == "agentmill.agent.completed"
        and e["resource"]["agentmill.role"] == "ARCHITECT"
    )
    assert done["resource"]["agentmill.phase"] == "architecture"
    assert done["resource"]["agentmill.model"] == "claude-opus-5-5"
    assert (
        int(done["resource"]["agentmill.tokens"]) > 0 and "agentmill.cost_usd" in done["resource"]
    )


TEAM = PLANNER_AND_BUILDER


def test_a_saved_key_is_used_by_the_next_run_and_stored_in_no_record(
    prefect_ui: dict[str, str], tmp_path: Path
) -> None:
    """Save the block after deploying, then rotate it: each next run uses the key it holds."""
    team = f"tiny-{uuid.uuid4().hex[:8]}"
    since = datetime.now(UTC) - timedelta(seconds=5)

    async def scenario(api: FakeMessagesAPI) -> list[UUID]:
        await AgentTeam(roles=TEAM).asave(team)
        runs = []
        for key in KEYS:  # saved, then rotated: no redeploy in between
            await AnthropicCredentials(api_key=key, base_url=api.base_url).asave(
                "anthropic", overwrite=True
            )
            seen = len(api.requests)
            idea = f"A todo app on Claude ({uuid.uuid4().hex})"  # a cold cache: real requests
            run_id = await _start(
                prefect_ui, {"idea": idea, "workdir": str(tmp_path / key[-4:]), "team": team}
            )
            await _wait_for(run_id, {StateType.COMPLETED})
            headers = {r.headers["authorization"] for r in api.requests[seen:]}
            assert headers == {f"Bearer {key}"}
            assert len(api.requests) - seen == len(TEAM) * PER_AGENT
            runs.append(run_id)
        return runs

    with _api(prefect_ui), FakeMessagesAPI() as api:
        runs = asyncio.run(scenario(api))
        records = asyncio.run(_every_record(runs))
        # Each run: every agent started and completed, every phase committed.
        want = 2 * len(TEAM) + 2
        for run_id in runs:
            events = asyncio.run(
                agentmill_events(prefect_ui["PREFECT_API_URL"], since, str(run_id), want=want)
            )
            records += json.dumps(events)
    for key in KEYS:
        assert key not in records


async def _every_record(runs: list[UUID]) -> str:
    """Every deployment, flow run (with subflows), artifact and log line of `runs`, as JSON."""
    async with get_client() as client:
        deployments = await client.read_deployments()
        flow_runs = await client.read_flow_runs()
        artifacts = await client.read_artifacts()
        logs = await client.read_logs()
        schedules = [await client.read_deployment_schedules(d.id) for d in deployments]
    parts = [d.model_dump_json() for d in deployments]
    parts += [r.model_dump_json() for r in flow_runs]
    parts += [a.model_dump_json() for a in artifacts if a.flow_run_id in runs]
    parts += [log.model_dump_json() for log in logs]
    parts += [s.model_dump_json() for group in schedules for s in group]
    assert {r.id for r in flow_runs} >= set(runs)
    return "\n".join(parts)


def test_the_approval_gate_pauses_revises_and_resumes_through_the_api(
    prefect_ui: dict[str, str], tmp_path: Path
) -> None:
    workdir = tmp_path / "app"
    params = {
        "idea": "A todo app, reviewed",
        "workdir": str(workdir),
        "provider": "offline",
        "approve_plan": True,
    }
    comment = "Add an offline mode with local storage"

    async def scenario() -> None:
        run_id = await _start(prefect_ui, params)
        await _wait_for(run_id, {StateType.PAUSED})
        assert _git(workdir, "log", "--format=%s").splitlines() == [
            "agentmill: planning phase (2 agents)"
        ]
        async with get_client() as client:
            await client.resume_flow_run(
                run_id, run_input={"decision": "request-changes", "comment": comment}
            )
        await _wait_for(run_id, {StateType.RUNNING})
        await _wait_for(run_id, {StateType.PAUSED})
        assert comment in (workdir / "docs" / "pm.md").read_text()  # the PM ran again with it
        async with get_client() as client:
            await client.resume_flow_run(run_id, run_input={"decision": "approve"})
        await _wait_for(run_id, {StateType.COMPLETED})

    with _api(prefect_ui):
        asyncio.run(scenario())
    subjects = _git(workdir, "log", "--reverse", "--format=%s").splitlines()
    assert subjects[:2] == ["agentmill: planning phase (2 agents)"] * 2 and len(subjects) == 6


def test_the_triage_schedule_fires_and_a_worker_completes_its_runs(
    prefect_ui: dict[str, str], tmp_path: Path
) -> None:
    """Turn the shipped (paused) triage schedule on, short: the scheduler makes runs, they run.

    Against a fake GitHub whose token is in a GitHubCredentials block (loaded by
    each run), offline. The first run opens the pull request; the next finds it
    open and skips the issue. The deployment allows one run at a time.
    """
    seed = init_repo(tmp_path / "seed")
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(seed), str(remote))

    async def scenario(fake: FakeGitHub) -> list[FlowRun]:
        await GitHubCredentials(token=TOKEN, api_url=fake.api_url).asave("github", overwrite=True)
        async with get_client() as client:
            deployment = await client.read_deployment_by_name("process_issues/triage-issues")
            (shipped,) = await client.read_deployment_schedules(deployment.id)
            assert shipped.active is False  # as prefect.yaml ships it
            await client.update_deployment_schedule(
                deployment.id,
                shipped.id,
                active=True,
                # Long enough that a run has mostly ended when the next is due: runs
                # queued behind the concurrency limit would only load the server.
                schedule=IntervalSchedule(interval=timedelta(seconds=10)),
                max_scheduled_runs=2,  # two queued ahead, not the scheduler's 100
                parameters={"clone_dir": str(tmp_path / "issues"), "provider": "offline"},
            )
            try:
                done = await _scheduled_runs_completed(client, deployment.id, want=2)
            finally:
                await client.update_deployment_schedule(deployment.id, shipped.id, active=False)
                for run in await _runs_of(client, deployment.id):
                    if run.state and run.state.type is StateType.SCHEDULED:
                        await client.delete_flow_run(run.id)
        return done

    with _api(prefect_ui), FakeGitHub(TOKEN) as fake:
        fake.add_repo(REPO, str(remote))
        fake.add_issue(REPO, "Add a greeting helper", "Please add a helper.", ["agent:ready"])
        done = asyncio.run(scenario(fake))
        pulls = list(fake.repos[REPO].pulls.values())
    assert all(run.auto_scheduled for run in done)  # the scheduler made them, not the test
    assert len(pulls) == 1 and pulls[0]["head"]["ref"] == "agentmill/issue-1"
    assert all(r.authorization == f"Bearer {TOKEN}" for r in fake.requests)


async def _runs_of(client: Any, deployment_id: UUID) -> list[FlowRun]:
    runs: list[FlowRun] = await client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
    )
    return runs


async def _scheduled_runs_completed(
    client: Any, deployment_id: UUID, want: int, timeout: float = 180
) -> list[FlowRun]:
    """Once `want` runs the scheduler created have completed (none may fail): those runs."""
    deadline = time.monotonic() + timeout
    runs: list[FlowRun] = []
    while time.monotonic() < deadline:
        runs = [r for r in await _runs_of(client, deployment_id) if r.auto_scheduled]
        for run in runs:
            if run.state and run.state.is_final() and run.state.type is not StateType.COMPLETED:
                raise AssertionError(f"scheduled run ended {run.state.type}: {run.state.message}")
        done = [r for r in runs if r.state and r.state.is_completed()]
        if len(done) >= want:
            return done
        await asyncio.sleep(1)
    states = [r.state.name if r.state else None for r in runs]
    raise AssertionError(f"{want} scheduled runs did not complete within {timeout}s: {states}")
