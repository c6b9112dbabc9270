"""The schedules agentmill is compared with: the same agent code, plain asyncio, no Prefect.

- sequential: one agent after another in plan order (the seeds' "before");
- level barriers: every agent of a dependency level at once, then wait for the
  whole level before the next (the seed's asyncio engine);
- asyncio dataflow: each agent awaits only its own dependencies, which is
  agentmill's schedule without Prefect; it isolates what orchestration costs.

Each calls `run_tool_loop` (the body of agentmill's agent task) with the job
agentmill would build: same settings, same idea, same upstream outputs in
topological order, same retry policy, against the same endpoint.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blocks.team import AgentTeam
from tasks.agents.job import AgentJob, agent_settings
from tasks.agents.loop import run_tool_loop
from tasks.agents.output import AgentOutput
from tasks.build.planning import Plan
from tasks.common.git import EMPTY_TREE
from tasks.model.endpoint import Endpoint, use_endpoint


@dataclass
class BaselineRun:
    """Wall time of one schedule and when each agent ran (seconds from its start)."""

    schedule: str
    wall_s: float
    started_s: dict[str, float] = field(default_factory=dict)
    duration_s: dict[str, float] = field(default_factory=dict)
    levels: int = 0


def dependency_levels(plan: Plan) -> list[list[str]]:
    """Level 0 has no dependencies; a role's level is one more than its deepest dependency's."""
    level: dict[str, int] = {}
    for role_id in plan.order:
        level[role_id] = 1 + max((level[d] for d in plan.role_deps(role_id)), default=-1)
    levels: list[list[str]] = [[] for _ in range(max(level.values()) + 1)]
    for role_id in plan.order:
        levels[level[role_id]].append(role_id)
    return levels


class _Runner:
    """Runs agents of one plan and remembers their outputs and timings."""

    def __init__(self, plan: Plan, team: AgentTeam, idea: str, workdir: Path) -> None:
        self.plan, self.team, self.idea, self.workdir = plan, team, idea, workdir
        self.outputs: dict[str, AgentOutput] = {}
        self.run = BaselineRun(schedule="", wall_s=0.0)
        self.clock = time.perf_counter()

    def job(self, role_id: str) -> AgentJob:
        upstream = self.plan.ordered(self.plan.ancestors[role_id])
        return AgentJob(
            role=self.plan.roles[role_id],
            settings=agent_settings(self.team, self.plan.roles[role_id]),
            provider="anthropic",
            idea=self.idea,
            base_tree=EMPTY_TREE,
            workdir=str(self.workdir),
            upstream=[self.outputs[r] for r in upstream],
        )

    async def agent(self, role_id: str) -> AgentOutput:
        started = time.perf_counter()
        output = await run_tool_loop(self.job(role_id))
        self.run.started_s[role_id] = started - self.clock
        self.run.duration_s[role_id] = time.perf_counter() - started
        self.outputs[role_id] = output
        return output


async def sequential(runner: _Runner) -> None:
    for role_id in runner.plan.order:  # deliberately one at a time: this is the baseline
        await runner.agent(role_id)


async def level_barriers(runner: _Runner) -> None:
    levels = dependency_levels(runner.plan)
    runner.run.levels = len(levels)
    for level in levels:
        await asyncio.gather(*(runner.agent(r) for r in level))


async def asyncio_dataflow(runner: _Runner) -> None:
    done: dict[str, asyncio.Future[None]] = {}
    loop = asyncio.get_running_loop()
    for role_id in runner.plan.order:
        done[role_id] = loop.create_future()

    async def one(role_id: str) -> None:
        await asyncio.gather(*(done[d] for d in runner.plan.role_deps(role_id)))
        await runner.agent(role_id)
        done[role_id].set_result(None)

    await asyncio.gather(*(one(r) for r in runner.plan.order))


SCHEDULES: dict[str, Callable[[_Runner], Coroutine[Any, Any, None]]] = {
    "sequential": sequential,
    "level_barriers": level_barriers,
    "asyncio_dataflow": asyncio_dataflow,
}


def run_baseline(
    schedule: str, plan: Plan, team: AgentTeam, idea: str, workdir: Path, endpoint: Endpoint
) -> BaselineRun:
    """Run the whole team on `schedule` in a fresh event loop; wall time from first to last."""

    async def main() -> BaselineRun:
        runner = _Runner(plan, team, idea, workdir)
        runner.run.schedule = schedule
        with use_endpoint(endpoint):
            runner.clock = time.perf_counter()
            await SCHEDULES[schedule](runner)
            runner.run.wall_s = time.perf_counter() - runner.clock
        return runner.run

    workdir.mkdir(parents=True, exist_ok=True)
    return asyncio.run(main())
