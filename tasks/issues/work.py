"""The agents of one issue: run through the same cached agent task as build_app's team.

`IssueAgents` keeps the outputs of one issue's agents in the order they
finished, so an agent's upstream (its transitive dependencies, in
topological order) is always complete when it starts; the code agents of
independent subtasks run at the same time, a dependent one as soon as its
dependencies are done. What an agent sees is fixed by the graph, as in
build_app: the base tree plus its dependencies' outputs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, cast

from prefect.client.schemas.objects import State

from blocks.team import Role
from tasks.agents.task import AgentJob, AgentOutput, run_agent
from tasks.issues.team import Plan, Subtask, code_role, fix_role, settings_for
from tasks.model.client import Provider


@dataclass
class Tally:
    """What an issue's agents cost so far; kept outside the subflow, so a failure still counts."""

    agents: int = 0
    cached: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    outputs: list[AgentOutput] = field(default_factory=list)

    def add(self, output: AgentOutput, cached: bool) -> None:
        self.agents += 1
        self.outputs.append(output)
        if cached:
            self.cached += 1
        else:
            self.tokens += output.usage.total_tokens
            self.cost_usd += output.cost_usd


@dataclass
class IssueAgents:
    """One issue's agents: the brief they share, the base they read, their outputs so far."""

    brief: str
    base_tree: str
    workdir: str
    provider: Provider
    tally: Tally
    outputs: dict[str, AgentOutput] = field(default_factory=dict)
    deps: dict[str, list[str]] = field(default_factory=dict)

    def add(self, output: AgentOutput, deps: list[str] | None = None) -> None:
        """Record an output that did not come from an agent (the checks' findings)."""
        self.outputs[output.role] = output
        self.deps[output.role] = deps or []

    def upstream(self, role: Role) -> list[AgentOutput]:
        """The role's transitive dependencies' outputs, in the order they were produced."""
        wanted: set[str] = set()
        stack = list(role.depends_on)
        while stack:
            current = stack.pop()
            if current in wanted:
                continue
            if current not in self.outputs:
                raise RuntimeError(f"agent {role.id} needs {current}, which has not run")
            wanted.add(current)
            stack.extend(self.deps.get(current, []))
        return [o for r, o in self.outputs.items() if r in wanted]

    async def run(self, role: Role, schema: dict[str, Any] | None = None) -> AgentOutput:
        """Run (or fetch from the cache) one agent, once its dependencies are recorded."""
        job = AgentJob(
            role=role,
            settings=settings_for(role),
            provider=self.provider,
            idea=self.brief,
            base_tree=self.base_tree,
            workdir=self.workdir,
            upstream=self.upstream(role),
            result_schema=schema,
        )
        pending = cast("Awaitable[State[AgentOutput]]", run_agent(job, return_state=True))
        state = await pending
        output = await cast("Awaitable[AgentOutput]", state.result())
        self.tally.add(output, cached=state.name == "Cached")
        self.add(output, role.depends_on)
        return output

    async def run_code(self, plan: Plan) -> list[AgentOutput]:
        """One code agent per subtask, each starting as soon as its dependencies are done."""
        futures: dict[int, asyncio.Future[AgentOutput]] = {}

        async def one(subtask: Subtask) -> AgentOutput:
            await asyncio.gather(*(futures[d] for d in subtask.depends_on))
            return await self.run(code_role(subtask))

        for subtask in plan.order():  # dependencies first, so their futures exist
            futures[subtask.id] = asyncio.ensure_future(one(subtask))
        try:
            await asyncio.gather(*futures.values())
        finally:
            for future in futures.values():
                future.cancel()  # a no-op on finished ones; stops dependants of a failure
        return [futures[s.id].result() for s in plan.order()]

    async def run_fixes(self, plan: Plan) -> list[AgentOutput]:
        """The review's round of fixes: every subtask's code agent at once."""
        return list(await asyncio.gather(*(self.run(fix_role(s)) for s in plan.order())))
