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
from typing import Any, TypeVar, cast

from prefect.client.schemas.objects import State
from prefect.utilities.annotations import quote

from blocks.team import AgentTeam, Role, checks_id
from tasks.agents.graph import AgentGraph, Finished, GraphHooks, Node
from tasks.agents.job import AgentJob, agent_settings
from tasks.agents.output import AgentOutput
from tasks.agents.watch import Observed, tell
from tasks.build.commit import commit_phase
from tasks.build.events import emit_agent_event, emit_phase_committed
from tasks.build.planning import Phase, Plan
from tasks.build.progress import Progress
from tasks.build.report import AgentReport, CommitRecord
from tasks.build.store import AgentEntry, Manifest, PhaseEntry, Store, now_iso
from tasks.build.verify import (
    CONFIG_FILES,
    CheckRun,
    NotCached,
    Verification,
    VerificationRound,
    detect_checks,
    failure_report,
    is_code,
    pointed_at,
    run_check,
)
from tasks.build.watch import BuildWatcher
from tasks.common.context import Scoped
from tasks.common.errors import AgentmillError
from tasks.common.git import list_tree, read_blobs
from tasks.common.logs import run_logger
from tasks.common.trees import CandidateTree
from tasks.model.endpoint import Provider
from tasks.model.ledger import CacheLedger

T = TypeVar("T")
_SETTLED = ("done", "failed", "skipped")
# What of a verdict differs from run to run for the same tree and checks.
_RUN_STATE: dict[str, Any] = {
    "rounds": {
        "__all__": {
            "started_s": True,
            "finished_s": True,
            "checks": {"__all__": {"duration_s", "cached"}},
        }
    }
}


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
    # Bystanders in this process (the terminal view): they hear every graph hook after us.
    observers: tuple[GraphHooks, ...] = ()
    clock_start: float = field(default_factory=time.perf_counter)
    install_deps: bool = False
    # Called with each phase commit before the next phase may commit: a build on a remote
    # pushes it there (one push per phase, in phase order).
    after_commit: Callable[[str], Awaitable[None]] | None = None
    runs: dict[str, AgentRun] = field(default_factory=dict)
    commits: list[CommitRecord] = field(default_factory=list)
    verification: Verification = field(default_factory=Verification)
    fixes: dict[str, list[str]] = field(default_factory=dict)  # phase -> fix agents, in order
    fix_owner: dict[str, str] = field(default_factory=dict)  # fix agent -> the role it fixes
    graph: AgentGraph = field(init=False)
    _phase_done: dict[str, asyncio.Future[bool]] = field(default_factory=dict)
    _phase_running: dict[str, asyncio.Event] = field(default_factory=dict)
    _all_running: asyncio.Event = field(default_factory=asyncio.Event)
    _subflows: dict[str, asyncio.Future[Any]] = field(default_factory=dict)  # phase -> call

    def __post_init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.graph = AgentGraph(
            provider=self.provider,
            idea=self.idea,
            base_tree=self.base_tree,
            workdir=str(self.workdir),
            hooks=Observed(self, *self.observers),
        )
        for node_id in self.plan.nodes:  # topological: dependencies are added first
            if node_id in self.plan.checks:
                phase = self.plan.phase_of(node_id)
                self.graph.add_step(
                    node_id, self.plan.checks[node_id], partial(self.verify_phase, phase)
                )
                continue
            role = self.plan.roles[node_id]
            settings = agent_settings(self.team, role)
            # The approval gate's comments reach the roots (the PM), whose revision
            # then really runs: the comments are part of its cache key.
            feedback = self.feedback if not role.depends_on else []
            self.graph.add(Node(role=role, settings=settings, feedback=feedback))
            self.manifest.agents[node_id] = AgentEntry(phase=role.phase)
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
        graph: a subflow ends as soon as its phase has committed (and the
        progress artifact is held again while it writes its final state: see
        `phase_ending`).
        """
        runs: list[asyncio.Task[T]] = []
        self._all_running.clear()

        async def started(phase: Phase) -> T:
            try:
                return await start(phase)
            except Exception as exc:
                self.abandon_phase(phase.name, exc)
                raise

        try:
            async with self.progress.held():
                for phase in phases:
                    run = asyncio.ensure_future(started(phase))
                    runs.append(run)
                    self._subflows[phase.name] = run
                    running = asyncio.ensure_future(self._phase_running[phase.name].wait())
                    await asyncio.wait([run, running], return_when=asyncio.FIRST_COMPLETED)
                    running.cancel()
        finally:
            self._all_running.set()
        try:
            return await asyncio.gather(*runs, return_exceptions=True)
        finally:
            self._subflows.clear()

    def abandon_phase(self, phase: str, exc: BaseException) -> None:
        """A phase subflow ended with its agents still pending: fail them, and its commit.

        Prefect raises from the subflow call when it cannot create the run (on
        a busy SQLite server, the parent's task run met "database is locked"
        past the client's five retries). The phase's agents then never start,
        so every agent of a later phase reading them, and the next phase's
        commit (which waits for this one's), would wait forever: the build hung.
        Failing them lets the build end, saying why; what had finished stays.
        """
        why = f"not run: phase {phase}'s subflow failed ({str(exc) or type(exc).__name__})"
        for node in [*self._roles_of(phase), checks_id(phase)]:
            if self.graph.abandon(node, why) and node in self.manifest.agents:
                self.skipped(node, why)
        done = self._phase_done[phase]
        if not done.done():
            self.manifest.phases.setdefault(phase, PhaseEntry()).status = "failed"
            self.store.save_manifest(self.manifest)
            done.set_result(False)

    def restart_phase(self, phase: str) -> None:
        """Make a committed phase runnable again (the approval gate sent it back)."""
        loop = asyncio.get_running_loop()
        roles = self._roles_of(phase)
        self.graph.reset([*roles, checks_id(phase)])
        self.verification.rounds = [r for r in self.verification.rounds if r.phase != phase]
        self.fixes.pop(phase, None)
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

    async def phase_ending(self, phase: str) -> None:
        """A phase subflow's last step: hold the progress artifact until its final state is in.

        The subflow's call (started by `start_phases`) returns once Prefect has
        written that state, so the hold ends then; a write already in flight
        finishes first. So no progress write of the build overlaps a flow-run
        write of the build, the pair that wedged a SQLite server for a minute.
        """
        run = self._subflows.get(phase)
        if run is None or run.done():
            return  # a phase run on its own (the approval gate's planning)
        release = self.progress.hold()
        run.add_done_callback(lambda _: release())
        await self.progress.idle()

    def no_starts_pending(self) -> None:
        """A phase runs alone (the approval gate's planning): no other subflow is being created."""
        self._all_running.set()

    async def run_role(self, role_id: str) -> AgentOutput:
        """Wait for this role's dependencies, then run (or fetch from cache) its agent."""
        return await self.graph.run(role_id)

    # -- verification ------------------------------------------------------------

    def _tell_watchers(self, method: str, *args: object) -> None:
        """What the checks do, for a watcher of the build (no agent hook reports a step)."""
        for observer in self.observers:
            if isinstance(observer, BuildWatcher):
                tell(observer, method, *args)

    async def verify_phase(self, phase: str) -> AgentOutput:
        """Run the phase's checks on its candidate tree; fix, at most `fix_rounds` times.

        The candidate tree is the base plus every output so far (earlier phases'
        fixes included) plus this phase's. A failure goes to the agents that
        wrote the files it points at (a fixer when no agent did), as a fix
        agent whose instructions hold the failure; the checks then run again.
        The returned output is the graph node dependants read: the verdict as
        its result, the fixed files as its files.
        """
        node = checks_id(phase)
        run = self.runs[node] = AgentRun(started_s=time.perf_counter() - self.clock_start)
        started = time.perf_counter()
        changed = [p for r in self._roles_of(phase) for p in self._files_of(r)]
        rounds: list[VerificationRound] = []
        fixed: dict[str, str] = {}
        if self.team.verify and any(is_code(p) for p in changed):
            layers = self._layers_before(phase) + [self._files_of(r) for r in self._roles_of(phase)]
            for number in range(1, self.team.fix_rounds + 2):
                tree = CandidateTree(str(self.workdir), self.base_tree, (*layers, dict(fixed)))
                began = time.perf_counter() - self.clock_start
                self._tell_watchers("checking", phase, number)
                checks = await self._run_checks(tree, phase)
                if not checks:
                    break
                rounds.append(
                    VerificationRound(
                        round=number,
                        phase=phase,
                        checks=checks,
                        started_s=round(began, 4),
                        finished_s=round(time.perf_counter() - self.clock_start, 4),
                    )
                )
                failing = [c for c in checks if c.status != "passed"]
                # a check that could not run (the sandbox failed, a tool is missing)
                # is nothing an agent can fix by editing files
                fixable = [c for c in failing if c.status != "error" and not c.missing_dependency]
                if not fixable or number > self.team.fix_rounds:
                    break
                files = pointed_at(failing, tree.paths())
                fixes = await self._fix(phase, files, failure_report(failing, files), layers, fixed)
                rounds[-1].fixed_by = [o.role for o in fixes]
                for output in fixes:
                    fixed.update(output.files)
        verdict = Verification.of(rounds)
        self.verification = Verification.of([*self.verification.rounds, *rounds])
        if rounds:
            self._tell_watchers("checked", phase, verdict)
        output = AgentOutput(
            role=node,
            summary=f"{phase}: {verdict.line()}",
            decisions=[f"round {r.round}: {c.name} {c.status}" for r in rounds for c in r.checks],
            files=fixed,
            # Without times and cache flags: the result is in dependants' cache keys,
            # and the same tree and checks must read the same on every run.
            result=verdict.model_dump(mode="json", exclude=_RUN_STATE),
            model="checks",
            provider=self.provider,
        )
        run.output, run.duration_s = output, time.perf_counter() - started
        log = run_logger("agentmill.build")
        log.info("phase %s: %s", phase, verdict.line())
        return output

    async def _run_checks(self, tree: CandidateTree, phase: str) -> list[CheckRun]:
        """Every check the tree calls for, at once, each a cached Prefect task."""
        configs = await asyncio.to_thread(self._config_texts, tree, tree.paths())
        declared = [c for r in self._roles_of(phase) for c in self.plan.roles[r].checks]
        specs = detect_checks(tree, configs, declared, self.team.check_timeout_s)
        # quoted: Prefect would walk every file of the tree looking for futures. Prefect
        # types an async task's call with return_state as returning the State itself.
        quoted = cast("CandidateTree", quote(tree))
        pending = [
            cast(
                "Awaitable[State[CheckRun]]",
                run_check(quoted, spec, self.install_deps, return_state=True),
            )
            for spec in specs
        ]
        states = await asyncio.gather(*pending)
        results: list[CheckRun] = []
        for spec, state in zip(specs, states, strict=True):
            try:
                run = await cast("Awaitable[CheckRun]", state.result())
                results.append(run.model_copy(update={"cached": state.name == "Cached"}))
            except NotCached as exc:
                results.append(exc.run)
            except Exception as exc:
                results.append(
                    CheckRun(
                        name=spec.name,
                        command=" ".join(spec.command),
                        status="error",
                        exit_code=None,
                        duration_s=0.0,
                        sandbox="process",
                        output_tail=f"the check could not run: {exc}",
                    )
                )
        return results

    @staticmethod
    def _config_texts(tree: CandidateTree, paths: list[str]) -> dict[str, str]:
        """The text of the files that decide which checks run (pyproject.toml, package.json...)."""
        wanted = [p for p in paths if p in CONFIG_FILES]
        overlay = tree.overlay()
        texts = {p: overlay[p] for p in wanted if p in overlay}
        entries = list_tree(Path(tree.workdir), tree.base_tree)
        blobs = read_blobs(Path(tree.workdir), [entries[p].blob for p in wanted if p not in texts])
        for path in wanted:
            if path not in texts:
                texts[path] = blobs[entries[path].blob].decode(errors="replace")
        return texts

    async def _fix(
        self,
        phase: str,
        files: list[str],
        report: str,
        layers: list[dict[str, str]],
        fixed: dict[str, str],
    ) -> list[AgentOutput]:
        """One fix agent per owner of the failing files (a fixer if none), all at once."""
        owners = sorted({self._writer(path, phase) or "" for path in files} - {""}) or ["FIXER"]
        done = self.fixes.setdefault(phase, [])
        roles = []
        for owner in owners:
            base = self.plan.roles.get(owner)
            count = sum(1 for fixed in self.fix_owner.values() if fixed == owner) + 1
            role = Role(
                id=f"{owner}_FIX_{count}",
                title=f"{base.title if base else 'Fixer'}, fixing the checks",
                phase=phase,
                track=base.track if base else "verification",
                tier=base.tier if base else self.team.fixer_tier,
                depends_on=[*self._roles_of(phase), *self._checks_before(phase), *done],
                instructions=fix_instructions(phase, report),
            )
            roles.append(role)
            self.fix_owner[role.id] = owner
            self.manifest.agents[role.id] = AgentEntry(phase=phase)
            self.graph.add(Node(role=role, settings=agent_settings(self.team, role)))
        done += [r.id for r in roles]
        return list(await asyncio.gather(*(self.graph.run(r.id) for r in roles)))

    def _writer(self, path: str, phase: str) -> str | None:
        """The role whose work last wrote `path` in this build, up to `phase`.

        A fix agent's write counts for the role it fixed, so a file that fails
        again goes back to the same owner.
        """
        writer = None
        for earlier in self.plan.phases:
            for role_id in [*earlier.roles, *self.fixes.get(earlier.name, [])]:
                if path in self._files_of(role_id):
                    writer = self.fix_owner.get(role_id, role_id)
            if earlier.name == phase:
                break
        return writer

    def _checks_before(self, phase: str) -> list[str]:
        names = [p.name for p in self.plan.phases]
        index = names.index(phase)
        return [checks_id(names[index - 1])] if index > 0 else []

    def _files_of(self, role_id: str) -> dict[str, str]:
        run = self.runs.get(role_id)
        return run.output.files if run and run.output else {}

    def _layers_before(self, phase: str) -> list[dict[str, str]]:
        """The change sets of every earlier phase, in order: its agents', then its fixes."""
        layers: list[dict[str, str]] = []
        for earlier in self.plan.phases:
            if earlier.name == phase:
                break
            layers += [self._files_of(r) for r in earlier.roles]
            layers.append(self._files_of(checks_id(earlier.name)))
        return layers

    def report_order(self) -> list[str]:
        """Every agent in graph order, each phase's fix agents after its own agents."""
        order: list[str] = []
        for node in self.plan.nodes:
            if node in self.plan.checks:
                order += self.fixes.get(self.plan.phase_of(node), [])
            else:
                order.append(node)
        return order

    def agent_deps(self) -> dict[str, list[str]]:
        """Each reported agent's dependencies (fix agents' included), for the critical path."""
        deps = {r: self.plan.role_deps(r) for r in self.plan.order}
        for fixes in self.fixes.values():
            for fix in fixes:
                deps[fix] = [d for d in self.graph.ancestors(fix) if d in deps or d in fixes]
        return deps

    # -- what the graph tells us, as agents land ------------------------------

    def _announce(self, role_id: str) -> partial[None]:
        entry = self.manifest.agents[role_id]
        phase = entry.phase
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
        agents = self.manifest.agents.values()  # fix agents and checks join as they are added
        self.progress.update(sum(1 for e in agents if e.status in _SETTLED), len(agents))

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
            roles = [*self.plan.ordered(self._roles_of(phase)), *self.fixes.get(phase, [])]
            outputs = [self.runs[r].output for r in roles]
            checks = self.graph.output(checks_id(phase))
            trailers = []
            if checks is not None and checks.result.get("status") != "skipped":
                outputs.append(checks)
                trailers.append(f"Agentmill-Checks: {checks.summary}")
            # In a worker thread: writing files and git objects takes tens of ms per
            # phase, and agents of later phases stream their replies meanwhile. Phases
            # commit one at a time (each waits for the one before), so there is never
            # a second writer.
            sha = await asyncio.to_thread(
                partial(
                    commit_phase,
                    self.workdir,
                    self.store,
                    phase,
                    [o for o in outputs if o],
                    self.run_id,
                    self.provider,
                    trailers,
                    parent=self.manifest.head,  # a commit made meanwhile is never built over
                    ancestors=self.plan.ancestors,  # who read whom: whose file may replace whose
                    # fix agents (and the checks node that carries their files) replace
                    # the files they fixed
                    overrides={*self.fixes.get(phase, []), checks_id(phase)},
                )
            )
            if sha is not None and self.after_commit is not None:
                await self.after_commit(sha)
        except Exception:
            entry.status = "failed"
            self.store.save_manifest(self.manifest)
            done.set_result(False)
            raise
        entry.status = "committed" if sha else "unchanged"
        entry.commit = sha or entry.commit  # unchanged: the commit that landed it before
        self.manifest.head = sha or self.manifest.head
        self.store.save_manifest(self.manifest)
        done.set_result(True)
        log = run_logger("agentmill.build")
        if sha is None:
            log.info("phase %s: no change against HEAD, no commit", phase)
            return None
        record = CommitRecord(
            phase=phase, sha=sha, agents=[*self._roles_of(phase), *self.fixes.get(phase, [])]
        )
        self.commits.append(record)
        emit_phase_committed(self.run_id, phase, sha, record.agents)
        log.info("phase %s committed as %s", phase, sha[:12])
        return record

    def _roles_of(self, phase: str) -> list[str]:
        return next(p.roles for p in self.plan.phases if p.name == phase)

    def agent_reports(self) -> list[AgentReport]:
        """A line per agent (fix agents included) and per phase's checks, in graph order."""
        reports = []
        for role_id in self.report_order():
            run = self.runs.get(role_id, AgentRun())
            out = run.output
            entry = self.manifest.agents[role_id]
            reports.append(
                AgentReport(
                    role=role_id,
                    phase=entry.phase,
                    model=out.model if out else entry.model,
                    cached=run.cached,
                    status=entry.status,
                    duration_s=round(run.duration_s, 4),
                    started_s=round(run.started_s, 4),
                    tokens=out.usage.total_tokens if out else 0,
                    cost_usd=0.0 if (run.cached or not out) else out.cost_usd,
                    requests=0 if (run.cached or not out) else out.usage.requests,
                    files=len(out.files) if out else 0,
                    refused=len(out.refused) if out else 0,
                    refusals=list(out.refused) if out else [],
                    error=entry.error,
                    cache=CacheLedger()
                    if (run.cached or not out)
                    else CacheLedger.of(out.usage, out.cost_usd, out.uncached_cost_usd),
                )
            )
        return reports


ACTIVE_BUILD: Scoped[Build | None] = Scoped("build", None)


def fix_instructions(phase: str, report: str) -> str:
    """What a fix agent is asked: its failures are part of its instructions, hence its key."""
    return (
        f"The project's checks failed after the {phase} phase. Make them pass: read the "
        "failing files and what they use, fix the cause (in the code, or in a test that is "
        "wrong), rewrite each file you change in full with write_file, and run the failing "
        "command with run before you submit. The failures:\n\n" + report
    )


def current_build() -> Build:
    return ACTIVE_BUILD.require(
        "run_phase is a subflow of build_app and cannot run on its own; run build_app"
    )
