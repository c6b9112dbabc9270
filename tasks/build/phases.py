"""The build's scheduler: agents start when their own dependencies finish; phases commit in order.

There are no level or phase barriers for agents: each one awaits only the
futures of its direct dependencies, wherever they are in the plan, so the
run's wall time can approach the graph's critical path. Commits are the
only ordered step: a phase commits once its agents are done and the phase
before it has committed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar, cast
from uuid import UUID

from prefect.artifacts import aupdate_progress_artifact
from prefect.client.schemas.objects import State
from prefect.utilities.annotations import quote

from blocks.team import AgentTeam
from tasks.agents.task import (
    AgentError,
    AgentJob,
    AgentOutput,
    AgentSettings,
    agent_settings,
    run_agent,
)
from tasks.build.commit import commit_phase
from tasks.build.events import emit_agent_event, emit_phase_committed
from tasks.build.planning import Phase, Plan
from tasks.build.report import AgentReport, CommitRecord
from tasks.build.store import AgentEntry, Manifest, PhaseEntry, Store, now_iso
from tasks.common.logs import run_logger
from tasks.model.client import Provider

T = TypeVar("T")
_SETTLED = ("done", "failed", "skipped")


class UpstreamFailed(RuntimeError):
    """An agent was not run because a dependency failed."""


class PhaseFailed(RuntimeError):
    """A phase did not commit; the message lists which agents failed and why."""


@dataclass
class AgentRun:
    started_s: float = 0.0
    duration_s: float = 0.0
    cached: bool = False
    output: AgentOutput | None = None
    error: str | None = None


@dataclass
class Build:
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
    progress_id: UUID | None = None
    feedback: list[str] = field(default_factory=list)
    clock_start: float = field(default_factory=time.perf_counter)
    runs: dict[str, AgentRun] = field(default_factory=dict)
    commits: list[CommitRecord] = field(default_factory=list)
    _futures: dict[str, asyncio.Future[AgentOutput]] = field(default_factory=dict)
    _phase_done: dict[str, asyncio.Future[bool]] = field(default_factory=dict)
    _phase_started: dict[str, asyncio.Event] = field(default_factory=dict)
    _progress_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _starts_done: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        loop = asyncio.get_running_loop()
        self._futures = {role: loop.create_future() for role in self.plan.order}
        self._phase_done = {p.name: loop.create_future() for p in self.plan.phases}
        self._phase_started = {p.name: asyncio.Event() for p in self.plan.phases}
        for role_id in self.plan.order:
            self.manifest.agents[role_id] = AgentEntry(phase=self.plan.phase_of(role_id))

    def settings_for(self, role_id: str) -> AgentSettings:
        return agent_settings(self.team, self.plan.roles[role_id])

    async def start_phases(
        self, start: Callable[[Phase], Awaitable[T]], phases: list[Phase]
    ) -> list[T | BaseException]:
        """Start every phase subflow, each as soon as the one before it is running.

        All phases run at the same time; only their starts are spaced, because
        concurrent flow-run creation on a SQLite-backed Prefect server hits
        "database is locked" and the client then backs off for seconds.
        """
        runs: list[asyncio.Task[T]] = []
        self._starts_done.clear()
        try:
            for phase in phases:
                run = asyncio.ensure_future(start(phase))
                runs.append(run)
                started = asyncio.ensure_future(self._phase_started[phase.name].wait())
                await asyncio.wait([run, started], return_when=asyncio.FIRST_COMPLETED)
                started.cancel()
        finally:
            self._starts_done.set()
        return await asyncio.gather(*runs, return_exceptions=True)

    def restart_phase(self, phase: str) -> None:
        """Make a committed phase runnable again (the approval gate sent it back)."""
        loop = asyncio.get_running_loop()
        for role_id in self._roles_of(phase):
            self._futures[role_id] = loop.create_future()
            self.runs.pop(role_id, None)
            self.manifest.agents[role_id] = AgentEntry(phase=phase)
        self._phase_done[phase] = loop.create_future()
        self._phase_started[phase] = asyncio.Event()

    def outputs_of(self, phase: str) -> list[AgentOutput]:
        runs = (self.runs.get(r) for r in self._roles_of(phase))
        return [run.output for run in runs if run and run.output]

    def phase_started(self, phase: str) -> None:
        self._phase_started[phase].set()

    def no_starts_pending(self) -> None:
        """A phase runs alone (the approval gate's planning): its end needs no holding."""
        self._starts_done.set()

    async def phase_starts_done(self) -> None:
        """Wait until every phase subflow has been created (or failed to be).

        A phase subflow holds its return (its final state write) until then:
        the server's flow-run insert reads before it writes in a deferred
        SQLite transaction, so a state write landing in between fails it with
        "database is locked", and the client retries only after 2 s. Commits
        are not held: only the subflow's own end waits, which takes no time
        from the build unless every agent of the phase finished first.
        """
        await self._starts_done.wait()

    async def run_role(self, role_id: str) -> AgentOutput:
        """Wait for this role's dependencies, then run (or fetch from cache) its agent."""
        role = self.plan.roles[role_id]
        entry = self.manifest.agents[role_id]
        future = self._futures[role_id]
        try:
            await asyncio.gather(*(self._futures[d] for d in role.depends_on))
        except Exception as exc:
            entry.status = "skipped"
            entry.error = f"not run: {exc}"
            await self._advance()
            skipped = UpstreamFailed(f"agent {role_id} not run: a dependency failed")
            self._fail(role_id, skipped)
            raise skipped from exc
        upstream = [
            self._futures[r].result() for r in self.plan.ordered(self.plan.ancestors[role_id])
        ]
        job = AgentJob(
            role=role,
            settings=self.settings_for(role_id),
            provider=self.provider,
            idea=self.idea,
            base_tree=self.base_tree,
            workdir=str(self.workdir),
            upstream=upstream,
            feedback=self.feedback if not role.depends_on else [],
        )
        run = self.runs[role_id] = AgentRun(started_s=time.perf_counter() - self.clock_start)
        entry.status, entry.started_at, entry.model = "running", now_iso(), job.settings.model
        entry.cache_key = job.cache_key()
        announce = partial(
            emit_agent_event, run_id=self.run_id, role=role_id, phase=role.phase, model=entry.model
        )
        announce("started")
        started = time.perf_counter()
        try:
            # quote(): Prefect would otherwise walk every field of every upstream output
            # in the job, twice per task run, to look for futures (there are none): a
            # cost that grows with the square of the team. The task gets the job itself.
            # Prefect types an async task's call as returning the State itself.
            pending = cast(
                "Awaitable[State[AgentOutput]]",
                run_agent(cast("AgentJob", quote(job)), return_state=True),
            )
            state = await pending
            output = await cast("Awaitable[AgentOutput]", state.result())
        except Exception as exc:
            run.duration_s = time.perf_counter() - started
            run.error = entry.error = _describe(role_id, exc)
            entry.status, entry.finished_at = "failed", now_iso()
            announce("failed", error=run.error)
            self._fail(role_id, AgentError(run.error))
            await self._advance()
            raise AgentError(run.error) from exc
        run.duration_s = time.perf_counter() - started
        run.cached = state.name == "Cached"
        run.output = output
        entry.status, entry.finished_at = "done", now_iso()
        entry.cached, entry.duration_s = run.cached, round(run.duration_s, 4)
        entry.cost_usd = 0.0 if run.cached else output.cost_usd
        entry.tokens = output.usage.model_dump(exclude={"requests"})
        entry.output_path = self.store.output_paths(role_id)[0]
        announce(
            "completed",
            tokens=0 if run.cached else output.usage.total_tokens,
            cost_usd=entry.cost_usd,
            cached=run.cached,
        )
        future.set_result(output)
        await self._advance()
        return output

    async def _advance(self) -> None:
        """Move the run's progress artifact; a UI watcher sees each agent land."""
        if self.progress_id is None:
            return
        async with self._progress_lock:  # counted inside the lock: the last write is the latest
            settled = sum(1 for e in self.manifest.agents.values() if e.status in _SETTLED)
            await aupdate_progress_artifact(
                self.progress_id,
                progress=round(100 * settled / len(self.plan.order), 1),
                description=f"{settled} of {len(self.plan.order)} agents done",
            )

    def _fail(self, role_id: str, exc: Exception) -> None:
        future = self._futures[role_id]
        if not future.done():
            future.set_exception(exc)
            future.exception()  # retrieved here: downstream roles report it, not asyncio

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
        if sha is None:
            run_logger("agentmill.dataflow").info(
                "phase %s: no change against HEAD, no commit", phase
            )
            return None
        record = CommitRecord(phase=phase, sha=sha, agents=self._roles_of(phase))
        self.commits.append(record)
        emit_phase_committed(self.run_id, phase, sha, record.agents)
        run_logger("agentmill.dataflow").info("phase %s committed as %s", phase, sha[:12])
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


def _describe(role_id: str, exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if text.startswith(("agent ", role_id)) else f"agent {role_id}: {text}"


_BUILD: ContextVar[Build | None] = ContextVar("agentmill_build", default=None)


@contextmanager
def active_build(build: Build) -> Iterator[None]:
    token = _BUILD.set(build)
    try:
        yield
    finally:
        _BUILD.reset(token)


def current_build() -> Build:
    build = _BUILD.get()
    if build is None:
        raise RuntimeError(
            "run_phase is a subflow of build_app and cannot run on its own; run build_app"
        )
    return build
