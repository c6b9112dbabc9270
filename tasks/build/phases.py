"""A build's phases: every phase subflow at once, agents as the graph allows, commits in order.

The agents run in the one scheduler (`tasks.agents.graph`): each starts when
its own dependencies finish, wherever they are in the plan. Commits are the
only ordered step: a phase commits once its agents are done and the phase
before it has committed. This module keeps the build's record as agents
land: the manifest, the Prefect events and the progress artifact. Every
phase subflow exists before the first agent runs (see `Build.start_phases`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

from blocks.team import AgentTeam
from tasks.agents.graph import AgentGraph, Finished, GraphHooks, Node
from tasks.agents.job import AgentJob, agent_settings
from tasks.agents.output import AgentOutput
from tasks.build.commit import commit_phase
from tasks.build.events import emit_agent_event, emit_phase_committed
from tasks.build.planning import Phase, Plan
from tasks.build.progress import Progress
from tasks.build.report import AgentReport, CommitRecord
from tasks.build.store import AgentEntry, Manifest, PhaseEntry, Store, now_iso
from tasks.common.context import Scoped
from tasks.common.errors import AgentmillError
from tasks.common.logs import run_logger
from tasks.model.endpoint import Provider

T = TypeVar("T")
_SETTLED = ("done", "failed", "skipped")


class PhaseFailed(AgentmillError, RuntimeError):
    """A phase did not commit; the message lists which agents failed and why."""


@dataclass
class AgentRun:
    started_s: float = 0.0
    duration_s: float = 0.0
    cached: bool = False
    output: AgentOutput | None = None
    error: str | None = None


@dataclass
class Build(GraphHooks):
    """Shared state of one build_app run; phase subflows find it through `current_build()`."""

    run_id: str
    idea: str
    team: AgentTeam
    plan: Plan
    provider: Provider
    workdir: Path
    base_tree: str
    store: Store
    manifest: Manifest
    progress: Progress = field(init=False)
    feedback: list[str] = field(default_factory=list)
    clock_start: float = field(default_factory=time.perf_counter)
    runs: dict[str, AgentRun] = field(default_factory=dict)
    commits: list[CommitRecord] = field(default_factory=list)
    graph: AgentGraph = field(init=False)
    _phase_done: dict[str, asyncio.Future[bool]] = field(default_factory=dict)
    _phase_running: dict[str, asyncio.Event] = field(default_factory=dict)
    _all_running: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.graph = AgentGraph(
            provider=self.provider,
            idea=self.idea,
            base_tree=self.base_tree,
            workdir=str(self.workdir),
            hooks=self,
        )
        for role_id in self.plan.order:  # topological: dependencies are added first
            role = self.plan.roles[role_id]
            settings = agent_settings(self.team, role)
            # The approval gate's comments reach the roots (the PM), whose revision
            # then really runs: the comments are part of its cache key.
            feedback = self.feedback if not role.depends_on else []
            self.graph.add(Node(role=role, settings=settings, feedback=feedback))
            self.manifest.agents[role_id] = AgentEntry(phase=role.phase)
        self._phase_done = {p.name: loop.create_future() for p in self.plan.phases}
        self._phase_running = {p.name: asyncio.Event() for p in self.plan.phases}
        self.progress = Progress(None, len(self.plan.order))

    async def start_phases(
        self, start: Callable[[Phase], Awaitable[T]], phases: list[Phase]
    ) -> list[T | BaseException]:
        """Create every phase subflow, one after another, before any agent runs; then run all.

        On a SQLite-backed Prefect server, creating a flow run (and the task run
        that stands for it in the parent) reads, then writes, in one deferred
        transaction: any write landing in between (an agent's task-run states, a
        progress update, another subflow's final state, a batch of logs) fails it
        with "database is locked", and the Prefect client tries again only after
        2 s, then 4, 8, 16 and 32 s. So the subflows are created back to back,
        never two at once, while nothing of the build writes: each subflow's
        agents wait in `phase_running` until the last one exists, and the
        progress artifact is held. After that nothing waits on anything but the
        graph: a subflow ends as soon as its phase has committed.
        """
        runs: list[asyncio.Task[T]] = []
        self._all_running.clear()
        try:
            async with self.progress.held():
                for phase in phases:
                    run = asyncio.ensure_future(start(phase))
                    runs.append(run)
                    running = asyncio.ensure_future(self._phase_running[phase.name].wait())
                    await asyncio.wait([run, running], return_when=asyncio.FIRST_COMPLETED)
                    running.cancel()
        finally:
            self._all_running.set()
        return await asyncio.gather(*runs, return_exceptions=True)

    def restart_phase(self, phase: str) -> None:
        """Make a committed phase runnable again (the approval gate sent it back)."""
        loop = asyncio.get_running_loop()
        roles = self._roles_of(phase)
        self.graph.reset(roles)
        for role_id in roles:
            self.runs.pop(role_id, None)
            self.manifest.agents[role_id] = AgentEntry(phase=phase)
        self._phase_done[phase] = loop.create_future()
        self._phase_running[phase] = asyncio.Event()

    def outputs_of(self, phase: str) -> list[AgentOutput]:
        runs = (self.runs.get(r) for r in self._roles_of(phase))
        return [run.output for run in runs if run and run.output]

    async def phase_running(self, phase: str) -> None:
        """A phase subflow's first step: say it runs, then wait until every phase subflow does.

        Its agents start only then, so no write of theirs races a subflow's
        creation (see `start_phases`); a phase that runs alone (the approval
        gate's planning) does not wait.
        """
        self._phase_running[phase].set()
        await self._all_running.wait()

    def no_starts_pending(self) -> None:
        """A phase runs alone (the approval gate's planning): no other subflow is being created."""
        self._all_running.set()

    async def run_role(self, role_id: str) -> AgentOutput:
        """Wait for this role's dependencies, then run (or fetch from cache) its agent."""
        return await self.graph.run(role_id)

    # -- what the graph tells us, as agents land ------------------------------

    def _announce(self, role_id: str) -> partial[None]:
        entry = self.manifest.agents[role_id]
        phase = self.plan.phase_of(role_id)
        return partial(
            emit_agent_event, run_id=self.run_id, role=role_id, phase=phase, model=entry.model
        )

    def started(self, role_id: str, job: AgentJob) -> None:
        entry = self.manifest.agents[role_id]
        self.runs[role_id] = AgentRun(started_s=time.perf_counter() - self.clock_start)
        entry.status, entry.started_at, entry.model = "running", now_iso(), job.settings.model
        entry.cache_key = job.cache_key()
        self._announce(role_id)("started")

    def finished(self, role_id: str, finished: Finished) -> None:
        run, entry, output = self.runs[role_id], self.manifest.agents[role_id], finished.output
        run.duration_s, run.cached, run.output = finished.duration_s, finished.cached, output
        entry.status, entry.finished_at = "done", now_iso()
        entry.cached, entry.duration_s = run.cached, round(run.duration_s, 4)
        entry.cost_usd = 0.0 if run.cached else output.cost_usd
        entry.tokens = output.usage.model_dump(exclude={"requests"})
        entry.output_path = self.store.output_paths(role_id)[0]
        self._announce(role_id)(
            "completed",
            tokens=0 if run.cached else output.usage.total_tokens,
            cost_usd=entry.cost_usd,
            cached=run.cached,
        )

    def failed(self, role_id: str, error: str, duration_s: float) -> None:
        run, entry = self.runs[role_id], self.manifest.agents[role_id]
        run.duration_s, run.error, entry.error = duration_s, error, error
        entry.status, entry.finished_at = "failed", now_iso()
        self._announce(role_id)("failed", error=error)

    def skipped(self, role_id: str, error: str) -> None:
        entry = self.manifest.agents[role_id]
        entry.status, entry.error = "skipped", error

    async def settled(self, role_id: str) -> None:
        """Move the run's progress artifact; a UI watcher sees agents land (see `Progress`)."""
        self.progress.update(sum(1 for e in self.manifest.agents.values() if e.status in _SETTLED))

    # -- commits ---------------------------------------------------------------

    async def finish_phase(self, phase: str, errors: list[BaseException]) -> CommitRecord | None:
        """Commit the phase once the one before it is committed; phases land in order."""
        index = [p.name for p in self.plan.phases].index(phase)
        previous_ok = True
        if index > 0:
            previous_ok = await asyncio.shield(self._phase_done[self.plan.phases[index - 1].name])
        done = self._phase_done[phase]
        entry = self.manifest.phases.setdefault(phase, PhaseEntry())
        try:
            if errors:
                raise PhaseFailed(
                    f"phase {phase} not committed: " + "; ".join(str(e) for e in errors)
                )
            if not previous_ok:
                raise PhaseFailed(f"phase {phase} not committed: an earlier phase failed")
            outputs = [self.runs[r].output for r in self.plan.ordered(self._roles_of(phase))]
            # In a worker thread: writing files and git objects takes tens of ms per
            # phase, and agents of later phases stream their replies meanwhile. Phases
            # commit one at a time (each waits for the one before), so there is never
            # a second writer.
            sha = await asyncio.to_thread(
                commit_phase,
                self.workdir,
                self.store,
                phase,
                [o for o in outputs if o],
                self.run_id,
                self.provider,
            )
        except Exception:
            entry.status = "failed"
            self.store.save_manifest(self.manifest)
            done.set_result(False)
            raise
        entry.status = "committed" if sha else "unchanged"
        entry.commit = sha or entry.commit  # unchanged: the commit that landed it before
        self.store.save_manifest(self.manifest)
        done.set_result(True)
        log = run_logger("agentmill.build")
        if sha is None:
            log.info("phase %s: no change against HEAD, no commit", phase)
            return None
        record = CommitRecord(phase=phase, sha=sha, agents=self._roles_of(phase))
        self.commits.append(record)
        emit_phase_committed(self.run_id, phase, sha, record.agents)
        log.info("phase %s committed as %s", phase, sha[:12])
        return record

    def _roles_of(self, phase: str) -> list[str]:
        return next(p.roles for p in self.plan.phases if p.name == phase)

    def agent_reports(self) -> list[AgentReport]:
        reports = []
        for role_id in self.plan.order:
            run = self.runs.get(role_id, AgentRun())
            out = run.output
            entry = self.manifest.agents[role_id]
            reports.append(
                AgentReport(
                    role=role_id,
                    phase=self.plan.phase_of(role_id),
                    model=out.model if out else entry.model,
                    cached=run.cached,
                    status=entry.status,
                    duration_s=round(run.duration_s, 4),
                    started_s=round(run.started_s, 4),
                    tokens=out.usage.total_tokens if out else 0,
                    cost_usd=0.0 if (run.cached or not out) else out.cost_usd,
                    requests=0 if (run.cached or not out) else out.usage.requests,
                    files=len(out.files) if out else 0,
                    error=entry.error,
                )
            )
        return reports


ACTIVE_BUILD: Scoped[Build | None] = Scoped("build", None)


def current_build() -> Build:
    return ACTIVE_BUILD.require(
        "run_phase is a subflow of build_app and cannot run on its own; run build_app"
    )
