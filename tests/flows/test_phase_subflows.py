"""The phase subflows on a real Prefect server: all exist before any agent runs, each ends
with its own commit while later phases still run.

The fake Messages API holds the last agent's first request (RELEASE_MANAGER, in
the ops phase) until the test has seen, through the Prefect API, the planning
phase's subflow Completed: so a subflow whose end waited for the rest of the
build would fail this test, whatever the machine's speed. Afterwards the run's
flow runs say that every phase subflow is a child of the build's and was
running before the first agent started (the manifest's times, the server's,
one clock), which is what keeps the build's own writes off their creation.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from uuid import UUID

import pytest
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
from prefect.client.schemas.objects import FlowRun

from blocks.team import default_team
from flows.build_app import abuild_app
from tasks.build.planning import plan_phases
from tasks.testing.messages_api import FakeMessagesAPI, SeenRequest

HELD_ROLE = "RELEASE_MANAGER"


class HeldAPI(FakeMessagesAPI):
    """The fake, holding every request of one role until `release` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.held = threading.Event()

    async def _wait(self, seen: SeenRequest) -> None:
        if seen.role == HELD_ROLE:
            self.held.set()
            await asyncio.to_thread(self.release.wait, 120)
        await super()._wait(seen)


async def subflows_of(run_id: str) -> list[FlowRun]:
    parent = FlowRunFilterParentFlowRunId(any_=[UUID(run_id)])
    async with get_client() as client:
        return await client.read_flow_runs(flow_run_filter=FlowRunFilter(parent_flow_run_id=parent))


async def wait_for(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 120) -> None:
    async def poll() -> None:
        while not await check():
            await asyncio.sleep(0.1)

    try:
        await asyncio.wait_for(poll(), timeout_s)
    except TimeoutError:
        pytest.fail(f"timed out waiting until {what}")


async def test_every_phase_subflow_runs_before_any_agent_and_ends_with_its_commit(
    tmp_path: Path, unique_idea: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import FAKE_KEY

    workdir = tmp_path / "app"
    phases = [p.name for p in plan_phases(default_team()).phases]
    with HeldAPI() as fake:
        monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.base_url)
        build = asyncio.ensure_future(abuild_app(idea=unique_idea, workdir=str(workdir)))
        manifest = workdir / ".tasks" / "manifest.json"

        async def manifest_written() -> bool:
            return manifest.exists() or build.done()

        await wait_for(manifest_written, "the build wrote its manifest")
        run_id = json.loads(manifest.read_text())["session"]

        async def planning_ended_while_ops_waits() -> bool:
            runs = {r.name: r for r in await subflows_of(run_id)}
            planning = runs.get(f"phase-{phases[0]}")
            return bool(planning and planning.state and planning.state.is_completed())

        await wait_for(planning_ended_while_ops_waits, "the planning subflow ended")
        # RELEASE_MANAGER's request is held until now, so ops (and the build) cannot have ended.
        assert not build.done()
        fake.release.set()
        result = await build

    assert result.status == "completed"
    runs = {r.name: r for r in await subflows_of(run_id)}
    assert sorted(runs) == sorted(f"phase-{p}" for p in phases)
    assert all(r.state and r.state.is_completed() for r in runs.values())
    last_running = max(r.start_time for r in runs.values() if r.start_time)
    agents = json.loads(manifest.read_text())["agents"]
    first_agent = min(datetime.fromisoformat(a["started_at"]) for a in agents.values())
    assert last_running <= first_agent
    planning_end = runs[f"phase-{phases[0]}"].end_time
    ops_end = runs[f"phase-{phases[-1]}"].end_time
    assert planning_end and ops_end and planning_end < ops_end  # not all ending together
