"""A run's progress as the terminal shows it, kept up to date by the run's own hooks.

`BuildProgress` is a BuildWatcher and `IssuesProgress` an IssuesWatcher: the
flows call them as agents start and finish and as phases (or issues) end,
in the flow's event loop; the live view reads them from its refresh thread,
so every read and write holds the lock. Nothing here polls the run.

The estimate of what remains is the critical path of the agents still to
run (tasks.build.report.critical_path, the same measure the report uses),
each weighted by how long it took the last time this team ran it on this
provider (tasks.cli.history), else by this run's mean for its model so far.
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from tasks.agents.graph import Finished, GraphHooks
from tasks.agents.job import AgentJob
from tasks.build.report import CommitRecord, critical_path
from tasks.build.watch import BuildWatcher
from tasks.cli.history import recorded
from tasks.issues.watch import IssuesWatcher

if TYPE_CHECKING:
    from tasks.build.phases import Build
    from tasks.build.verify import Verification
    from tasks.issues.github import Issue
    from tasks.issues.report import IssueResult

AgentStatus = Literal["pending", "running", "done", "failed", "skipped"]
SETTLED: tuple[AgentStatus, ...] = ("done", "failed", "skipped")
Clock = Callable[[], float]
History = Callable[[str], dict[str, float]]


@dataclass
class AgentState:
    role: str
    phase: str
    model: str = ""
    depends_on: list[str] = field(default_factory=list)
    status: AgentStatus = "pending"
    started_at: float = 0.0
    duration_s: float = 0.0
    cached: bool = False
    tokens: int = 0
    cost_usd: float = 0.0
    error: str = ""


@dataclass
class PhaseState:
    name: str
    roles: list[str]
    outcome: Literal["open", "committed", "unchanged", "failed"] = "open"
    commit: str = ""
    error: str = ""
    checking: int = 0  # the round of checks running now (0: none)
    checks: str = ""  # the checks' verdict once they are done: passed or failed
    checks_line: str = ""  # and in words, with rounds and fixes


class AgentBook(GraphHooks):
    """Agents by role as their hooks report them; the part both pipelines share."""

    def __init__(self, clock: Clock, lock: threading.RLock) -> None:
        self.clock = clock
        self.lock = lock
        self.agents: dict[str, AgentState] = {}

    def _agent(self, role_id: str, phase: str = "") -> AgentState:
        return self.agents.setdefault(role_id, AgentState(role=role_id, phase=phase))

    def started(self, role_id: str, job: AgentJob) -> None:
        with self.lock:
            agent = self._agent(role_id, job.role.phase)
            agent.model, agent.depends_on = job.settings.model, list(job.role.depends_on)
            agent.status, agent.started_at, agent.error = "running", self.clock(), ""

    def finished(self, role_id: str, finished: Finished) -> None:
        with self.lock:
            agent = self._agent(role_id)
            agent.status, agent.cached = "done", finished.cached
            agent.duration_s = finished.duration_s
            if not finished.cached:  # a cache hit cost nothing this run
                agent.tokens = finished.output.usage.total_tokens
                agent.cost_usd = finished.output.cost_usd

    def failed(self, role_id: str, error: str, duration_s: float) -> None:
        with self.lock:
            agent = self._agent(role_id)
            agent.status, agent.error, agent.duration_s = "failed", error, duration_s

    def skipped(self, role_id: str, error: str) -> None:
        with self.lock:
            agent = self._agent(role_id)
            agent.status, agent.error = "skipped", error

    def running(self) -> list[AgentState]:
        with self.lock:
            return sorted(
                (a for a in self.agents.values() if a.status == "running"),
                key=lambda a: a.started_at,
            )

    def spent(self) -> tuple[int, float]:
        """(tokens, dollars) of the agents finished so far; cache hits count nothing."""
        with self.lock:
            return (
                sum(a.tokens for a in self.agents.values()),
                sum(a.cost_usd for a in self.agents.values()),
            )

    def real_durations(self) -> dict[str, float]:
        """How long each agent that really ran (no cache hit) took: what history records."""
        with self.lock:
            return {
                a.role: a.duration_s
                for a in self.agents.values()
                if a.status == "done" and not a.cached
            }

    def mean_for(self, model: str) -> float | None:
        """This run's mean duration of agents that really ran, on `model` if any did."""
        real = [a for a in self.agents.values() if a.status == "done" and not a.cached]
        same = [a.duration_s for a in real if a.model == model] or [a.duration_s for a in real]
        return sum(same) / len(same) if same else None


class BuildProgress(AgentBook, BuildWatcher):
    """One build: its phases, its agents, what it spent, and an estimate of what remains."""

    def __init__(self, clock: Clock = time.monotonic, history: History = recorded) -> None:
        super().__init__(clock, threading.RLock())
        self.history = history
        self.began = clock()
        self.phases: list[PhaseState] = []
        self.order: list[str] = []
        self.expected: dict[str, float] = {}
        self.provider = ""
        self.workdir = ""
        self.history_key = ""

    def planned(self, build: Build) -> None:
        with self.lock:
            self.provider, self.workdir = build.provider, str(build.workdir)
            self.history_key = f"build:{build.manifest.team}:{build.provider}"
            self.expected = self.history(self.history_key)
            self.order = list(build.plan.order)
            self.phases = [PhaseState(p.name, list(p.roles)) for p in build.plan.phases]
            for role_id in self.order:
                role = build.plan.roles[role_id]
                agent = self._agent(role_id, role.phase)
                agent.model = build.team.model_for(role)
                agent.depends_on = list(role.depends_on)

    def checking(self, phase: str, round_number: int) -> None:
        with self.lock:
            state = self._phase_named(phase)
            if state is not None:
                state.checking = round_number

    def checked(self, phase: str, verdict: Verification) -> None:
        with self.lock:
            state = self._phase_named(phase)
            if state is not None:
                state.checking, state.checks, state.checks_line = 0, verdict.status, verdict.line()

    def _phase_named(self, name: str) -> PhaseState | None:
        return next((p for p in self.phases if p.name == name), None)

    def phase_ended(
        self, phase: str, commit: CommitRecord | None, error: BaseException | None
    ) -> None:
        with self.lock:
            state = self._phase_named(phase)
            if state is None:
                return
            if error is not None:
                state.outcome, state.error = "failed", str(error)
            elif commit is not None:
                state.outcome, state.commit = "committed", commit.sha
            else:
                state.outcome = "unchanged"

    def started(self, role_id: str, job: AgentJob) -> None:
        with self.lock:
            for phase in self.phases:  # the approval gate sends a committed phase back
                if role_id in phase.roles and phase.outcome != "open":
                    phase.outcome, phase.commit, phase.error = "open", "", ""
                    phase.checking, phase.checks, phase.checks_line = 0, "", ""
            super().started(role_id, job)

    def counts(self, phase: PhaseState) -> tuple[int, int, int]:
        """(settled, running, total) agents of the phase."""
        with self.lock:
            states = [self.agents[r].status for r in phase.roles if r in self.agents]
            return (
                sum(1 for s in states if s in SETTLED),
                sum(1 for s in states if s == "running"),
                len(phase.roles),
            )

    def extras(self, phase: PhaseState) -> list[AgentState]:
        """Agents of the phase the plan did not list: the verification's fix agents."""
        with self.lock:
            return [
                a
                for a in self.agents.values()
                if a.phase == phase.name and a.role not in phase.roles
            ]

    def elapsed_s(self) -> float:
        return self.clock() - self.began

    def remaining_s(self) -> float | None:
        """The critical path of what is still to run, or None while nothing says how long."""
        now = self.clock()
        with self.lock:
            if not self.phases:
                return None  # not planned yet
            left: dict[str, float] = {}
            for role_id, agent in self.agents.items():
                if agent.status in SETTLED:
                    continue
                expected = self.expected.get(role_id) or self.mean_for(agent.model)
                if expected is None:
                    return None
                ran = now - agent.started_at if agent.status == "running" else 0.0
                left[role_id] = max(expected - ran, 0.0)
            if not left:
                return 0.0
            deps = {r: a.depends_on for r, a in self.agents.items()}
            order = self.order + [r for r in self.agents if r not in self.order]
            return critical_path(left, deps, order)[0]


IssueStage = Literal["queued", "working", "opened", "updated", "skipped", "unchanged", "failed"]


@dataclass
class IssueState:
    number: int
    title: str
    stage: IssueStage = "queued"
    started_at: float = 0.0
    book: AgentBook | None = None
    result: IssueResult | None = None


class IssuesProgress(IssuesWatcher):
    """One process_issues run: each issue's stage and agents, and an estimate of what remains.

    The issue team's graph grows as it works (the coordinator decides the
    code agents), so the estimate is by issue: the mean time of an issue
    (this run's, else the last recorded for this repository and provider),
    spread over the free slots of `concurrency`.
    """

    def __init__(self, clock: Clock = time.monotonic, history: History = recorded) -> None:
        self.clock = clock
        self.history = history
        self.lock = threading.RLock()
        self.began = clock()
        self.repo = ""
        self.provider = ""
        self.concurrency = 1
        self.issues: dict[int, IssueState] = {}
        self.recorded_mean: float | None = None
        self.listed_done = False

    @property
    def history_key(self) -> str:
        return f"issues:{self.repo}:{self.provider}"

    def listed(self, repo: str, provider: str, issues: list[Issue], concurrency: int) -> None:
        with self.lock:
            self.repo, self.provider, self.concurrency = repo, provider, concurrency
            self.issues = {i.number: IssueState(i.number, i.title) for i in issues}
            self.recorded_mean = self.history(self.history_key).get("issue")
            self.listed_done = True

    def issue_started(self, number: int) -> None:
        with self.lock:
            issue = self.issues[number]
            issue.stage, issue.started_at = "working", self.clock()

    def issue_finished(self, result: IssueResult) -> None:
        with self.lock:
            issue = self.issues.setdefault(result.number, IssueState(result.number, result.title))
            issue.stage, issue.result = result.status, result

    def agents(self, number: int) -> GraphHooks:
        with self.lock:
            issue = self.issues.setdefault(number, IssueState(number, ""))
            issue.book = AgentBook(self.clock, self.lock)
            return issue.book

    def spent(self) -> tuple[int, float]:
        with self.lock:
            totals = [i.book.spent() for i in self.issues.values() if i.book]
            return sum(t for t, _ in totals), sum(c for _, c in totals)

    def elapsed_s(self) -> float:
        return self.clock() - self.began

    def mean_issue_s(self) -> float | None:
        with self.lock:
            done = [i.result.duration_s for i in self.issues.values() if i.result]
            return sum(done) / len(done) if done else self.recorded_mean

    def remaining_s(self) -> float | None:
        """When the last issue should be done: queued issues take the earliest free slot."""
        now = self.clock()
        with self.lock:
            stages = [i for i in self.issues.values() if i.stage in ("queued", "working")]
            if not stages:
                return 0.0 if self.listed_done else None
            mean = self.mean_issue_s()
            if mean is None:
                return None
            slots = [max(mean - (now - i.started_at), 0.0) for i in stages if i.stage == "working"]
            slots += [0.0] * max(self.concurrency - len(slots), 0)
            heapq.heapify(slots)
            for _ in (i for i in stages if i.stage == "queued"):
                heapq.heappush(slots, heapq.heappop(slots) + mean)
            return max(slots) if slots else 0.0

    def durations_to_record(self) -> dict[str, float]:
        """The mean time of an issue that really ran this time (none cached), for history."""
        with self.lock:
            real = [
                i.result.duration_s
                for i in self.issues.values()
                if i.result and i.result.agents > i.result.cached_agents
            ]
        return {"issue": sum(real) / len(real)} if real else {}


def clock_text(seconds: float) -> str:
    """1:05 for 65 s; 1:02:03 past an hour."""
    seconds = max(math.ceil(seconds), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
