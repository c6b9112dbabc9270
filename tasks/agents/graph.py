"""The one scheduler: agents as nodes of a graph, each run once its dependencies are done.

Both pipelines run their agents here. A node starts as soon as the nodes it
depends on have outputs, wherever they are (no level or phase barriers), so
a run's wall time can approach the graph's critical path. What a node's
agent reads is fixed by the graph, never by timing: the outputs of its
transitive dependencies, in the order the nodes were added. A node can only
be added after its dependencies, so that order is topological.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from prefect.client.schemas.objects import State
from prefect.utilities.annotations import quote

from blocks.team import Role
from tasks.agents.errors import AgentError, UpstreamFailed
from tasks.agents.job import AgentJob, AgentSettings
from tasks.agents.loop import shared_prefix_key
from tasks.agents.output import AgentOutput
from tasks.agents.task import run_agent
from tasks.common.errors import AgentmillError
from tasks.model import warmup
from tasks.model.endpoint import Provider


class CycleError(AgentmillError, ValueError):
    """Dependencies that go round in a circle; `cycle` lists them, first one repeated last."""

    def __init__(self, cycle: list[str]) -> None:
        super().__init__("dependencies form a cycle: " + " -> ".join(cycle))
        self.cycle = cycle


def topological_order(deps: Mapping[str, Sequence[str]]) -> list[str]:
    """Every key after its dependencies, keeping the mapping's own order where it can.

    Dependencies that are not keys are ignored (the caller checks for them);
    a cycle raises CycleError naming it. Iterative, so a deep chain cannot hit
    the recursion limit.
    """
    order: list[str] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for start in deps:
        if state.get(start):
            continue
        path: list[str] = [start]
        pending: list[list[str]] = [[d for d in reversed(deps[start]) if d in deps]]
        state[start] = 1
        while path:
            if pending[-1]:
                dep = pending[-1].pop()
                if state.get(dep) == 1:
                    raise CycleError([*path[path.index(dep) :], dep])
                if not state.get(dep):
                    state[dep] = 1
                    path.append(dep)
                    pending.append([d for d in reversed(deps[dep]) if d in deps])
                continue
            done = path.pop()
            pending.pop()
            state[done] = 2
            order.append(done)
    return order


@dataclass
class Node:
    """One agent of the graph: its role, how it calls its model, and what it must answer."""

    role: Role
    settings: AgentSettings
    result_schema: dict[str, Any] | None = None
    # Reviewers' comments (the approval gate): a list the pipeline may extend
    # before the node runs again; read when the node's job is built.
    feedback: list[str] = field(default_factory=list)


@dataclass
class Finished:
    output: AgentOutput
    cached: bool
    duration_s: float


class GraphHooks:
    """What a pipeline hears as its agents run; every method is optional."""

    def started(self, role_id: str, job: AgentJob) -> None:
        """The agent's job is built and its task is about to run."""

    def finished(self, role_id: str, finished: Finished) -> None:
        """The agent produced an output (a cache hit included); before dependants start."""

    def failed(self, role_id: str, error: str, duration_s: float) -> None:
        """The agent failed; `error` names it and says why."""

    def skipped(self, role_id: str, error: str) -> None:
        """The agent was not run because a dependency failed."""

    async def settled(self, role_id: str) -> None:
        """After any of the above, once dependants have been released (progress updates)."""


@dataclass
class AgentGraph:
    """The agents of one run and their outputs; `await graph.run(role_id)` runs one."""

    provider: Provider
    idea: str
    base_tree: str
    workdir: str
    hooks: GraphHooks = field(default_factory=GraphHooks)
    # Top-level folders no agent of this graph may write, each with the reason.
    protected_dirs: dict[str, str] = field(default_factory=dict)
    _nodes: dict[str, Node] = field(default_factory=dict)
    _deps: dict[str, list[str]] = field(default_factory=dict)  # insertion order: topological
    _futures: dict[str, asyncio.Future[AgentOutput]] = field(default_factory=dict)
    _steps: dict[str, Callable[[], Awaitable[AgentOutput]]] = field(default_factory=dict)

    def add(self, node: Node) -> None:
        """Add a node; each dependency must be in the graph already."""
        role_id = node.role.id
        self._check_known(role_id, node.role.depends_on)
        self._nodes[role_id] = node
        self._deps[role_id] = list(node.role.depends_on)
        self._futures[role_id] = asyncio.get_running_loop().create_future()

    def add_step(
        self, step_id: str, depends_on: Iterable[str], step: Callable[[], Awaitable[AgentOutput]]
    ) -> None:
        """Add a node whose output comes from `step`, not an agent (a phase's checks).

        It runs once its dependencies are done, like an agent, and its output
        is read by dependants like an agent's.
        """
        self._check_known(step_id, list(depends_on))
        self._deps[step_id] = list(depends_on)
        self._steps[step_id] = step
        self._futures[step_id] = asyncio.get_running_loop().create_future()

    def record(self, output: AgentOutput, depends_on: Iterable[str] = ()) -> None:
        """Add an output no agent produced (the review's checks), for dependants to read."""
        self._deps[output.role] = list(depends_on)
        future = asyncio.get_running_loop().create_future()
        future.set_result(output)
        self._futures[output.role] = future

    def _check_known(self, node_id: str, depends_on: list[str]) -> None:
        missing = [d for d in depends_on if d not in self._deps]
        if missing:
            raise AgentmillError(
                f"agent {node_id} depends on {', '.join(missing)}, which the run has not "
                "added; add dependencies first"
            )

    def reset(self, role_ids: Iterable[str]) -> None:
        """Make finished nodes runnable again (the approval gate sent them back)."""
        loop = asyncio.get_running_loop()
        for role_id in role_ids:
            self._futures[role_id] = loop.create_future()

    def abandon(self, node_id: str, error: str) -> bool:
        """Fail a node that will never run (its phase's subflow ended before running it).

        Its dependants then fail at once, as for an agent that failed, instead of
        waiting for an output that cannot come. Returns whether the node was
        still pending; a node that ran, or is running, is left alone.
        """
        future = self._futures[node_id]
        if future.done():
            return False
        self._fail(future, AgentError(f"agent {node_id}: {error}"))
        return True

    def output(self, role_id: str) -> AgentOutput | None:
        future = self._futures.get(role_id)
        if future is None or not future.done() or future.exception() is not None:
            return None
        return future.result()

    def ancestors(self, role_id: str) -> set[str]:
        """The transitive dependencies of `role_id`."""
        seen: set[str] = set()
        stack = list(self._deps[role_id])
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(self._deps[current])
        return seen

    def upstream(self, role_id: str) -> list[AgentOutput]:
        """What `role_id` reads: its transitive dependencies' outputs, in topological order."""
        wanted = self.ancestors(role_id)
        outputs = []
        for other in self._deps:
            if other in wanted:
                output = self.output(other)
                if output is None:
                    raise AgentmillError(f"agent {role_id} needs {other}, which has not finished")
                outputs.append(output)
        return outputs

    def job(self, role_id: str) -> AgentJob:
        node = self._nodes[role_id]
        return AgentJob(
            role=node.role,
            settings=node.settings,
            provider=self.provider,
            idea=self.idea,
            base_tree=self.base_tree,
            workdir=self.workdir,
            upstream=self.upstream(role_id),
            feedback=list(node.feedback),
            result_schema=node.result_schema,
            protected_dirs=self.protected_dirs,
        )

    async def run(self, role_id: str) -> AgentOutput:
        """Wait for the node's dependencies, then run its agent (or fetch it from the cache)."""
        future = self._futures[role_id]
        try:
            await asyncio.gather(*(self._futures[d] for d in self._deps[role_id]))
        except Exception as exc:
            skipped = UpstreamFailed(f"agent {role_id} not run: a dependency failed")
            self._fail(future, skipped)
            if role_id not in self._steps:
                self.hooks.skipped(role_id, f"not run: {exc}")
                await self.hooks.settled(role_id)
            raise skipped from exc
        if role_id in self._steps:
            return await self._run_step(role_id, future)
        job = self.job(role_id)
        self.hooks.started(role_id, job)
        started = time.perf_counter()
        try:
            # quote(): Prefect would otherwise walk every field of every upstream output
            # in the job, twice per task run, to look for futures (there are none): a
            # cost that grows with the square of the team. The task gets the job itself.
            # Prefect types an async task's call as returning the State itself.
            # Counted as about to start on its shared prompt prefix until its first
            # request: agents that start together then read one warmed entry. Starting a
            # task run blocks the loop for tens of ms, so first every agent released
            # with this one counts itself (one yield), then they start.
            with warmup.expecting(shared_prefix_key(job)):
                await asyncio.sleep(0)
                pending = cast(
                    "Awaitable[State[AgentOutput]]",
                    run_agent(cast("AgentJob", quote(job)), return_state=True),
                )
                state = await pending
            output = await cast("Awaitable[AgentOutput]", state.result())
        except Exception as exc:
            error = describe(role_id, exc)
            self.hooks.failed(role_id, error, time.perf_counter() - started)
            self._fail(future, AgentError(error))
            await self.hooks.settled(role_id)
            raise AgentError(error) from exc
        finished = Finished(output, state.name == "Cached", time.perf_counter() - started)
        self.hooks.finished(role_id, finished)
        future.set_result(output)
        await self.hooks.settled(role_id)
        return output

    async def _run_step(self, step_id: str, future: asyncio.Future[AgentOutput]) -> AgentOutput:
        try:
            output = await self._steps[step_id]()
        except Exception as exc:
            self._fail(future, AgentError(describe(step_id, exc)))
            raise
        future.set_result(output)
        return output

    @staticmethod
    def _fail(future: asyncio.Future[AgentOutput], exc: Exception) -> None:
        if not future.done():
            future.set_exception(exc)
            future.exception()  # retrieved here: dependants report it, not asyncio


def describe(role_id: str, exc: BaseException) -> str:
    """The error's text, starting with the agent's name."""
    text = str(exc) or type(exc).__name__
    return text if text.startswith(("agent ", role_id)) else f"agent {role_id}: {text}"
