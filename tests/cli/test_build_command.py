"""`agentmill build`: a real build, shown as plain lines, as a live view, or with Prefect's logs.

Each runs in this process against the session's Prefect server (the CLI
checks PREFECT_API_URL's server first), on the offline model.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from rich.console import Console

from blocks.team import AgentTeam, default_team
from flows.build_app import abuild_app
from tasks.build.planning import plan_phases
from tasks.build.report import CommitRecord
from tasks.build.watch import BUILD_WATCHER
from tasks.cli import build as build_command
from tasks.cli.history import history_path, recorded
from tasks.cli.main import main
from tasks.cli.progress import BuildProgress
from tasks.testing.repos import git
from tasks.testing.teams import PLANNER_AND_BUILDER

PHASES = [p.name for p in plan_phases(default_team()).phases]
PREFECT_NOISE = ("Created task run", "Finished in state", "Beginning subflow run")


@pytest.fixture
def small_team() -> str:
    """A saved two-role team: a real build in a couple of seconds."""
    name = f"small-{uuid.uuid4().hex[:8]}"
    AgentTeam(roles=PLANNER_AND_BUILDER).save(name)
    return name


def test_without_a_terminal_a_build_prints_a_few_lines_per_phase_and_a_summary(
    tmp_path: Path, unique_idea: str, capfd: pytest.CaptureFixture[str]
) -> None:
    workdir = tmp_path / "app"
    code = main(["build", unique_idea, "--workdir", str(workdir)])
    out, err = capfd.readouterr()

    assert code == 0, err
    lines = out.splitlines()
    progress = lines[: next(i for i, line in enumerate(lines) if "agentmill build:" in line)]
    assert (
        progress[0]
        == "build: 32 agents in 5 phases; OFFLINE MODEL: placeholder output, not real work"
    )
    for phase in PHASES:
        mine = [line for line in progress if line.startswith(f"{phase}: ")]
        # started, settled, the checks' verdict, committed: not one per request
        assert 2 <= len(mine) <= 4, mine
        assert re.search(rf"^{phase}: committed [0-9a-f]{{12}}$", "\n".join(mine), re.M)
    assert len(progress) <= 2 + 4 * len(PHASES)
    assert "implementation: checks passed (2 round(s), 1 fix(es))" in progress  # the offline bug
    committed = [line.split(":")[0] for line in progress if ": committed " in line]
    assert committed == PHASES  # in the order the commits land
    summary = "\n".join(lines[len(progress) :])
    for sha in git(workdir, "rev-list", "HEAD").split():
        assert sha[:12] in summary
    assert "OFFLINE" in summary and str(workdir / ".tasks" / "report.json") in summary
    assert "wall vs critical path" in summary
    assert not any(noise in out + err for noise in PREFECT_NOISE)
    # Every role that really ran (a fix agent of the verification too, if one ran).
    assert set(recorded("build:default:offline")) >= set(plan_phases(default_team()).order)
    assert history_path().is_file()


def test_prefects_own_lines_are_quiet_unless_verbose(
    tmp_path: Path, unique_idea: str, small_team: str
) -> None:
    """In a fresh process, as users run it (Prefect's console handler is set up there)."""

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        args = ["build", unique_idea, "--workdir", str(tmp_path / "app"), "--team", small_team]
        return subprocess.run(
            [str(Path(sys.executable).parent / "agentmill"), *args, *extra],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=240,
        )

    quiet = run()
    assert quiet.returncode == 0, quiet.stderr
    assert "OFFLINE MODEL" in quiet.stderr  # warnings still come through
    assert not any(noise in quiet.stdout + quiet.stderr for noise in PREFECT_NOISE)
    verbose = run("--verbose")
    assert verbose.returncode == 0, verbose.stderr
    assert "Finished in state Cached" in verbose.stderr  # the rerun: every agent a cache hit


def test_on_a_terminal_the_view_redraws_phases_agents_spend_and_time(
    tmp_path: Path, unique_idea: str, small_team: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TERM", "xterm-256color")
    console = Console(force_terminal=True, width=100, record=True, file=open(tmp_path / "tty", "w"))  # noqa: SIM115
    monkeypatch.setattr(build_command, "make_console", lambda: console)
    code = main(["build", unique_idea, "--workdir", str(tmp_path / "app"), "--team", small_team])
    text = console.export_text()

    assert code == 0
    frames = text.split("agentmill build  ")
    assert len(frames) > 2  # redrawn, not printed once
    last = frames[-1]
    assert re.search(r"planning\s.*1/1\s+committed [0-9a-f]{8}", last)
    assert re.search(r"implementation\s.*1/1\s+committed [0-9a-f]{8}", last)
    assert "tokens" in last and "cost $0.0000" in last and "elapsed" in last
    assert "OFFLINE MODEL" in text  # Prefect's warning, printed above the view
    assert not any(noise in text for noise in PREFECT_NOISE)
    assert "agentmill build: completed" in text  # the summary table, after the view


async def test_the_watcher_hears_every_agent_and_phase_of_a_real_build(
    tmp_path: Path, unique_idea: str, small_team: str
) -> None:
    workdir = tmp_path / "app"
    progress = BuildProgress()
    with BUILD_WATCHER.use(progress):
        result = await abuild_app(idea=unique_idea, workdir=str(workdir), team=small_team)
    assert {r: a.status for r, a in progress.agents.items()} == {
        "PLANNER": "done",
        "BUILDER": "done",
    }
    assert [(p.name, p.commit) for p in progress.phases] == [
        (c.phase, c.sha) for c in result.commits
    ]
    assert set(progress.real_durations()) == {"PLANNER", "BUILDER"}
    assert progress.spent()[0] == result.metrics.tokens

    again = BuildProgress()
    with BUILD_WATCHER.use(again):
        await abuild_app(idea=unique_idea, workdir=str(workdir), team=small_team)
    assert all(a.cached for a in again.agents.values()) and again.real_durations() == {}
    assert {p.outcome for p in again.phases} == {"unchanged"}


class Broken(BuildProgress):
    def started(self, role_id: str, job: object) -> None:
        raise RuntimeError("the view fell over")

    def phase_ended(self, phase: str, commit: CommitRecord | None, error: object) -> None:
        raise RuntimeError("the view fell over again")


async def test_a_failing_watcher_never_breaks_the_build(
    tmp_path: Path, unique_idea: str, small_team: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, "agentmill.watch"), BUILD_WATCHER.use(Broken()):
        result = await abuild_app(idea=unique_idea, workdir=str(tmp_path / "app"), team=small_team)
    assert result.status == "completed" and len(result.commits) == 2
    assert "a run observer failed in started" in caplog.text
    assert "a run observer failed in phase_ended" in caplog.text


def test_our_errors_are_one_line_and_usage_errors_exit_2(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    code = main(["build", "An app", "--workdir", str(tmp_path / "app"), "--team", "nope"])
    out, err = capfd.readouterr()
    assert code == 1
    assert err.strip().splitlines() == [
        "agentmill: error: no AgentTeam block named 'nope'; save one with "
        "AgentTeam(...).save('nope') or use the team 'default'"
    ]
    assert "Traceback" not in out + err
    with pytest.raises(SystemExit) as exit_info:
        main(["build", "   ", "--workdir", str(tmp_path / "app")])
    assert exit_info.value.code == 2
    assert "idea: the idea is empty" in capfd.readouterr().err


def test_the_console_command_is_installed_with_every_subcommand() -> None:
    agentmill = Path(sys.executable).parent / "agentmill"
    proc = subprocess.run([str(agentmill), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for command in ("build", "issues", "serve", "doctor"):
        assert command in proc.stdout
    build_help = subprocess.run(
        [str(agentmill), "build", "--help"], capture_output=True, text=True, timeout=60
    ).stdout
    for option in (
        "--workdir",
        "--team",
        "--provider",
        "--credentials",
        "--budget-usd",
        "--verbose",
    ):
        assert option in build_help
