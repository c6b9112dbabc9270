"""The Prefect UI path for real: a server, `prefect deploy --all`, a worker, runs via the API.

Starts its own Prefect server (own PREFECT_HOME, free loopback port, default
services so events are stored), registers the blocks, deploys prefect.yaml to
a process work pool, starts a worker, runs build-app offline and through the
approval gate, and reads back commits, artifacts and events from the API.
Run alone with `pytest -m integration`.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.settings import PREFECT_API_URL, temporary_settings

from tasks.testing.prefect_api import agentmill_events, stop
from tasks.testing.prefect_server import PrefectServer
from tasks.testing.repos import CHECKOUT

pytestmark = pytest.mark.integration

ROOT = CHECKOUT
DUMMY_KEY = "sk-ant-api03-DEPLOYTEST-0000000000000000000000"
DUMMY_TOKEN = "ghp_DEPLOYTEST000000000000000000000000000"


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
    """A server and a process worker with prefect.yaml deployed; stopped at the end."""
    home = tmp_path_factory.mktemp("prefect-ui")
    server = PrefectServer(services_off=(), root=home)  # every service on: events are stored
    env = {
        **os.environ,
        "PREFECT_HOME": str(server.home),
        "PREFECT_API_URL": server.api_url,
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "1",
    }
    worker: subprocess.Popen[bytes] | None = None
    with server:
        try:
            _cli(env, "work-pool", "create", "local", "--type", "process")
            registered = _cli(env, "block", "register", "-m", "blocks")
            assert "Successfully registered 3 blocks" in registered
            subprocess.run(
                [sys.executable, "-c",
                 "from blocks import AnthropicCredentials as A, GitHubCredentials as G; "
                 f"A(api_key='{DUMMY_KEY}').save('anthropic'); "
                 f"G(token='{DUMMY_TOKEN}').save('github')"],
                cwd=ROOT, env=env, check=True, timeout=60,
            )  # fmt: skip
            _cli(env, "--no-prompt", "deploy", "--all")
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


def test_build_app_deployment_runs_on_a_worker_with_report_and_events(
    prefect_ui: dict[str, str], tmp_path: Path
) -> None:
    workdir = tmp_path / "app"
    since = datetime.now(UTC) - timedelta(seconds=5)
    params = {"idea": "A todo app, deployed", "workdir": str(workdir), "provider": "offline"}

    async def scenario() -> tuple[FlowRun, list[Any], list[dict[str, Any]]]:
        run_id = await _start(prefect_ui, params)
        run = await _wait_for(run_id, {StateType.COMPLETED})
        async with get_client() as client:
            artifacts = [a for a in await client.read_artifacts() if a.flow_run_id == run_id]
            deployment = await client.read_deployment_by_name("build_app/build-app")
        assert deployment.parameter_openapi_schema is not None
        properties = deployment.parameter_openapi_schema["properties"]
        for field in ("idea", "team", "provider", "budget_usd", "workdir", "approve_plan"):
            assert properties[field].get("description"), field  # the UI form explains every field
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
    assert DUMMY_KEY not in json.dumps(events) + str(report.data)


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
