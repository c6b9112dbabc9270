"""The agents of one issue, run by the one scheduler (`tasks.agents.graph`) as build_app's are.

The issue's graph grows as the work does: triage, then the coordinator,
whose plan decides the code agents (one per subtask: independent ones at the
same time, a dependent one as soon as its dependencies are done), then the
checks' findings and the reviewer, and a round of fixes if asked for. What
an agent sees is fixed by the graph, as in build_app: the base tree plus its
dependencies' outputs.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from blocks.team import Role
from tasks.agents.graph import AgentGraph, Finished, GraphHooks, Node
from tasks.agents.output import AgentOutput
from tasks.agents.watch import Observed
from tasks.issues.team import IssuePlan, code_role, fix_role, settings_for
from tasks.model.endpoint import Provider


@dataclass
class Tally(GraphHooks):
    """What an issue's agents cost so far; kept outside the subflow, so a failure still counts."""

    agents: int = 0
    cached: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    refused: int = 0  # tool calls refused (logged as warnings as they happen)
    outputs: list[AgentOutput] = field(default_factory=list)

    def finished(self, role_id: str, finished: Finished) -> None:
        self.agents += 1
        self.outputs.append(finished.output)
        self.refused += len(finished.output.refused)
        if finished.cached:
            self.cached += 1
        else:
            self.tokens += finished.output.usage.total_tokens
            self.cost_usd += finished.output.cost_usd


class IssueAgents:
    """One issue's agents: the brief they share, the base they read, the graph they form."""

    def __init__(
        self,
        *,
        brief: str,
        base_tree: str,
        workdir: str,
        provider: Provider,
        tally: Tally,
        observers: tuple[GraphHooks, ...] = (),
        protected_dirs: dict[str, str] | None = None,
    ) -> None:
        self.tally = tally
        self.graph = AgentGraph(
            provider=provider,
            idea=brief,
            base_tree=base_tree,
            workdir=workdir,
            hooks=Observed(tally, *observers),
            protected_dirs=dict(protected_dirs or {}),
        )

    def add(self, output: AgentOutput, deps: list[str] | None = None) -> None:
        """Record an output that did not come from an agent (the checks' findings)."""
        self.graph.record(output, deps or [])

    async def run(self, role: Role, schema: dict[str, Any] | None = None) -> AgentOutput:
        """Add one agent to the graph and run it (or fetch it from the cache)."""
        self.graph.add(Node(role=role, settings=settings_for(role), result_schema=schema))
        return await self.graph.run(role.id)

    async def run_code(self, plan: IssuePlan) -> list[AgentOutput]:
        """One code agent per subtask, each starting as soon as its dependencies are done."""
        return await self._run_all([code_role(s) for s in plan.order()])

    async def run_fixes(self, plan: IssuePlan) -> list[AgentOutput]:
        """The review's round of fixes: every subtask's code agent at once."""
        return await self._run_all([fix_role(s) for s in plan.order()])

    async def _run_all(self, roles: list[Role]) -> list[AgentOutput]:
        for role in roles:  # in plan order: each one's dependencies are added before it
            self.graph.add(Node(role=role, settings=settings_for(role)))
        runs = [asyncio.ensure_future(self.graph.run(role.id)) for role in roles]
        try:
            return list(await asyncio.gather(*runs))
        finally:
            for run in runs:
                run.cancel()  # a no-op on finished ones; stops dependants of a failure
