"""The live view's progress: kept by the run's hooks, estimating what remains from what ran."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from blocks.team import AgentTeam, Role
from tasks.agents.graph import Finished
from tasks.agents.job import AgentJob, AgentSettings
from tasks.agents.output import AgentOutput, Usage
from tasks.build.planning import plan_phases
from tasks.build.report import CommitRecord
from tasks.build.verify import CheckRun, Verification, VerificationRound
from tasks.cli.history import record, recorded
from tasks.cli.live import BuildLines, render_build
from tasks.cli.progress import BuildProgress, IssuesProgress, clock_text
from tasks.issues.github import Issue
from tasks.issues.report import IssueResult

# A -> B -> C in one chain, D on its own: the critical path is the longer of the two.
ROLES = [
    Role(id="A", title="A", phase="planning", track="t", tier="haiku", instructions="a"),
    Role(id="B", title="B", phase="architecture", track="t", depends_on=["A"], instructions="b"),
    Role(id="C", title="C", phase="architecture", track="t", depends_on=["B"], instructions="c"),
    Role(id="D", title="D", phase="planning", track="u", tier="opus", instructions="d"),
]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def planned(progress: BuildProgress) -> BuildProgress:
    team = AgentTeam(roles=ROLES)
    build = SimpleNamespace(
        provider="anthropic",
        workdir=Path("/tmp/app"),
        manifest=SimpleNamespace(team="small"),
        plan=plan_phases(team),
        team=team,
    )
    progress.planned(build)  # type: ignore[arg-type]
    return progress


def job(role_id: str) -> AgentJob:
    role = next(r for r in ROLES if r.id == role_id)
    return AgentJob(
        role=role,
        settings=AgentSettings(model=AgentTeam(roles=ROLES).model_for(role)),
        provider="anthropic",
        idea="x",
        base_tree="t",
        workdir="/tmp/app",
    )


def finished(role_id: str, seconds: float, cached: bool = False) -> Finished:
    output = AgentOutput(
        role=role_id,
        summary="done",
        model="m",
        provider="anthropic",
        cost_usd=0.25,
        usage=Usage(input_tokens=100, output_tokens=20),
    )
    return Finished(output=output, cached=cached, duration_s=seconds)


def test_the_estimate_is_the_critical_path_of_what_is_left_by_recorded_durations() -> None:
    clock = Clock()
    history = {"A": 10.0, "B": 20.0, "C": 5.0, "D": 30.0}
    progress = planned(BuildProgress(clock=clock, history=lambda key: history))
    assert progress.history_key == "build:small:anthropic"
    assert progress.remaining_s() == 35.0  # A + B + C beats D

    progress.started("A", job("A"))
    progress.started("D", job("D"))
    clock.now = 4.0
    assert progress.remaining_s() == 31.0  # A has 6 s left, then B and C; D has 26 s
    assert [a.role for a in progress.running()] == ["A", "D"]

    progress.finished("A", finished("A", 4.0))
    progress.started("B", job("B"))
    clock.now = 20.0
    assert progress.remaining_s() == 10.0  # D's 30 - 20 beats B's 20 - 16 plus C's 5
    assert progress.spent() == (120, 0.25)


def test_without_history_the_estimate_waits_for_a_real_duration_then_uses_the_mean() -> None:
    clock = Clock()
    progress = planned(BuildProgress(clock=clock, history=lambda key: {}))
    progress.started("A", job("A"))
    assert progress.remaining_s() is None  # nothing says how long anything takes yet
    progress.finished("A", finished("A", 0.001, cached=True))
    assert progress.remaining_s() is None  # a cache hit says nothing about real work
    progress.started("D", job("D"))
    clock.now = 6.0
    progress.finished("D", finished("D", 6.0))
    assert progress.remaining_s() == 12.0  # B and C, 6 s each: this run's mean so far
    assert progress.real_durations() == {"D": 6.0}


def test_phases_count_their_agents_and_take_their_commit() -> None:
    progress = planned(BuildProgress(clock=Clock(), history=lambda key: {}))
    planning, architecture = progress.phases
    progress.started("A", job("A"))
    progress.finished("A", finished("A", 1.0))
    progress.started("D", job("D"))
    assert progress.counts(planning) == (1, 1, 2)
    progress.failed("D", "agent D: boom", 1.0)
    progress.skipped("B", "not run")
    assert progress.counts(planning) == (2, 0, 2) and progress.counts(architecture) == (1, 0, 2)
    progress.phase_ended("planning", CommitRecord(phase="planning", sha="abc123", agents=[]), None)
    progress.phase_ended("architecture", None, RuntimeError("an earlier phase failed"))
    assert (planning.outcome, planning.commit) == ("committed", "abc123")
    assert architecture.outcome == "failed" and "earlier" in architecture.error
    progress.started("A", job("A"))  # the approval gate sent planning back
    assert planning.outcome == "open"


def test_plain_lines_tell_phase_ends_in_the_order_the_commits_land() -> None:
    out = io.StringIO()
    lines = planned(BuildLines(Console(file=out, width=200)))
    architecture = CommitRecord(phase="architecture", sha="bbb222", agents=[])
    lines.phase_ended("architecture", architecture, None)  # its subflow returned first
    assert "architecture:" not in out.getvalue()
    lines.phase_ended("planning", CommitRecord(phase="planning", sha="aaa111", agents=[]), None)
    lines.started("A", job("A"))  # the approval gate sent planning back
    lines.phase_ended("planning", CommitRecord(phase="planning", sha="ccc333", agents=[]), None)
    ends = [line for line in out.getvalue().splitlines() if "committed" in line]
    assert ends == [
        "planning: committed aaa111",
        "architecture: committed bbb222",
        "planning: committed ccc333",
    ]


def test_a_phases_checks_show_while_they_run_and_their_verdict_after() -> None:
    out = io.StringIO()
    lines = planned(BuildLines(Console(file=out, width=200)))
    lines.started("A", job("A"))
    lines.finished("A", finished("A", 1.0))
    lines.started("D", job("D"))
    lines.finished("D", finished("D", 1.0))

    def frame() -> str:
        screen = Console(file=io.StringIO(), width=120, record=True)
        screen.print(render_build(lines))
        return next(line for line in screen.export_text().splitlines() if "planning" in line)

    assert frame().endswith("waiting to commit")  # no checks have started: nothing to check yet
    lines.checking("planning", 2)
    assert frame().endswith("checks running (round 2)")
    passed = CheckRun(
        name="pytest",
        command="pytest -q",
        status="passed",
        exit_code=0,
        duration_s=1.0,
        sandbox="process",
        output_tail="",
    )
    failed = passed.model_copy(update={"status": "failed", "exit_code": 1})
    rounds = [
        VerificationRound(round=1, phase="planning", checks=[failed], fixed_by=["A_FIX_1"]),
        VerificationRound(round=2, phase="planning", checks=[passed]),
    ]
    lines.checked("planning", Verification.of(rounds))
    assert frame().endswith("checks passed; to commit")
    assert "planning: checks passed (2 round(s), 1 fix(es))" in out.getvalue().splitlines()
    lines.started("A", job("A"))  # sent back by the approval gate: its checks run again
    assert "checks" not in frame()


def test_issues_are_estimated_by_free_slots() -> None:
    clock = Clock()
    progress = IssuesProgress(clock=clock, history=lambda key: {"issue": 10.0})
    issues = [Issue(number=n, title=f"issue {n}") for n in (1, 2, 3, 4, 5)]
    assert progress.remaining_s() is None  # nothing listed yet
    progress.listed("acme/widgets", "offline", issues, concurrency=2)
    assert progress.remaining_s() == 30.0  # 5 issues of 10 s on 2 slots: 10, 10 | 10, 10 | 10
    progress.issue_started(1)
    progress.issue_started(2)
    clock.now = 4.0
    assert progress.remaining_s() == 26.0  # 6 s left on both, then 3 more on 2 slots
    result = IssueResult(
        number=1, title="issue 1", status="opened", branch="b", duration_s=2.0, agents=3
    )
    progress.issue_finished(result)
    assert progress.mean_issue_s() == 2.0  # this run's own figure replaces the recorded one
    assert progress.durations_to_record() == {"issue": 2.0}
    hooks = progress.agents(2)
    hooks.started("TRIAGE", job("A"))
    assert [a.role for a in progress.issues[2].book.running()] == ["TRIAGE"]  # type: ignore[union-attr]


def test_history_keeps_the_last_real_durations_and_survives_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "agentmill" / "durations.json"
    assert recorded("build:t:offline", path) == {}
    record("build:t:offline", {"A": 1.23456, "B": 2.0}, path)
    record("build:t:offline", {"A": 3.0}, path)
    record("build:t:anthropic", {"A": 30.0}, path)
    assert recorded("build:t:offline", path) == {"A": 3.0, "B": 2.0}
    assert recorded("build:t:anthropic", path) == {"A": 30.0}
    path.write_text("{not json")
    assert recorded("build:t:offline", path) == {}
    record("build:t:offline", {"A": 4.0}, path)
    assert json.loads(path.read_text()) == {"build:t:offline": {"A": 4.0}}


@pytest.mark.parametrize(("seconds", "text"), [(0, "0:00"), (65, "1:05"), (3723, "1:02:03")])
def test_clock_text(seconds: float, text: str) -> None:
    assert clock_text(seconds) == text
