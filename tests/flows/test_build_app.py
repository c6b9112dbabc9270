"""build_app end to end on the offline model: commits, store, report, cache across processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from blocks.team import AgentTeam, default_team
from flows.build_app import BuildResult, build_app
from tasks.build.offline_script import REQUESTS_PER_AGENT as PER_AGENT
from tasks.build.offline_script import requests_of
from tasks.build.planning import PlanError, plan_phases
from tasks.common.workspace import WorkspaceBusy, workspace_lock
from tasks.testing.repos import CHECKOUT, git

ROOT = CHECKOUT


def trailers(workdir: Path, sha: str) -> list[str]:
    body = git(workdir, "log", "-1", "--format=%B", sha)
    return [line for line in body.splitlines() if line.startswith("Agentmill-")]


def run_cli(*args: str) -> dict[str, object]:
    """Run the CLI in a fresh process; return the run report it wrote."""
    proc = subprocess.run(
        [sys.executable, "-m", "flows.build_app", *args],
        cwd=ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    workdir = Path(args[args.index("--workdir") + 1])
    report: dict[str, object] = json.loads((workdir / ".tasks" / "report.json").read_text())
    return report


def test_offline_build_commits_each_phase_and_records_everything(
    tmp_path: Path, unique_idea: str
) -> None:
    workdir = tmp_path / "app"
    result = build_app(idea=unique_idea, workdir=str(workdir))

    assert isinstance(result, BuildResult)
    assert result.status == "completed" and result.provider == "offline"
    plan = plan_phases(default_team())
    shas = git(workdir, "rev-list", "--reverse", "HEAD").split()
    assert len(shas) == len(plan.phases) == result.metrics.commits == len(result.commits)
    assert [c.phase for c in result.commits] == [p.name for p in plan.phases]
    assert [c.sha for c in result.commits] == shas
    assert git(workdir, "status", "--porcelain") == ""

    manifest = json.loads((workdir / ".tasks" / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["session"] == result.run_id
    assert {p: e["commit"] for p, e in manifest["phases"].items()} == {
        c.phase: c.sha for c in result.commits
    }
    fixes = [a.role for a in result.agents if a.role not in plan.roles]
    assert fixes == ["CORE_DEV_FIX_1"]  # the offline model's deliberate bug, and its fix
    assert set(manifest["agents"]) == {*plan.order, *fixes}
    for commit in result.commits:
        lines = trailers(workdir, commit.sha)
        assert f"Agentmill-Run: {result.run_id}" in lines
        keys = {
            line.split()[1]: line.split("key=")[1].split()[0] for line in lines if "Agent:" in line
        }
        assert set(keys) == set(commit.agents)
        for role, key in keys.items():
            entry = manifest["agents"][role]
            assert entry["status"] == "done" and entry["cache_key"] == key
            recorded = json.loads(git(workdir, "show", f"{commit.sha}:.tasks/{role}/output.json"))
            assert recorded["cache_key"] == key and recorded["files"]
            for path in recorded["files"]:
                assert git(workdir, "log", "-1", "--format=%H", "--", path) == commit.sha

    report = json.loads((workdir / ".tasks" / "report.json").read_text())
    metrics = report["metrics"]
    assert len(report["agents"]) == len(plan.order) + len(fixes)
    assert metrics["model_requests"] == sum(requests_of(a["role"]) for a in report["agents"])
    assert 0 < metrics["critical_path_s"] <= metrics["wall_s"]
    assert metrics["parallel_efficiency"] == pytest.approx(
        metrics["critical_path_s"] / metrics["wall_s"], abs=1e-3
    )
    assert metrics["sum_agent_s"] >= metrics["critical_path_s"]
    for agent in report["agents"]:
        assert {"role", "phase", "model", "cached", "duration_s", "tokens", "cost_usd"} <= set(
            agent
        )
        assert agent["cached"] is False and agent["tokens"] > 0
    assert (workdir / ".tasks" / "report.timeline.svg").read_text().startswith("<svg")
    # the offline model read its dependencies before writing
    web_dev = (workdir / "docs" / "web-dev.md").read_text()
    assert "WEB_LEAD" in web_dev and unique_idea in web_dev and "offline model" in web_dev

    # Verified: round 1 fails on the offline model's bug, a fix round, then green.
    verification = report["verification"]
    assert verification["status"] == "passed" == result.verification.status
    implementation = [r for r in verification["rounds"] if r["phase"] == "implementation"]
    assert [r["round"] for r in implementation] == [1, 2]
    failing = next(c for c in implementation[0]["checks"] if c["name"] == "pytest")
    assert failing["status"] == "failed" and failing["exit_code"] == 1
    assert "test_pending_leaves_out_what_is_done" in failing["output_tail"]
    assert implementation[0]["fixed_by"] == fixes
    assert all(c["status"] == "passed" for c in implementation[1]["checks"])
    for check in (c for r in verification["rounds"] for c in r["checks"]):
        assert {"name", "command", "status", "exit_code", "duration_s", "sandbox",
                "output_tail"} <= set(check)  # fmt: skip
        assert check["sandbox"] == ("bwrap" if shutil.which("bwrap") else "process")
    implementation_sha = next(c.sha for c in result.commits if c.phase == "implementation")
    assert "Agentmill-Checks: implementation: checks passed (2 round(s), 1 fix(es))" in trailers(
        workdir, implementation_sha
    )
    assert "| implementation | 1 | pytest | failed |" in (workdir / ".tasks/report.md").read_text()
    # reviewers read the verdict; roles that do not depend on it are not held back by it (that
    # the scheduler starts a node once its own dependencies are done is tests/agents/test_graph's)
    review = (workdir / "docs" / "code-quality-reviewer.md").read_text()
    assert "CHECKS_IMPLEMENTATION: implementation: checks passed" in review
    assert not any(node.startswith("CHECKS_") for node in plan.ancestors["DEVOPS"])
    # and the committed tree's own tests pass when anyone runs them
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=workdir,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "PREFECT"))},
    )
    assert proc.returncode == 0 and "6 passed" in proc.stdout, proc.stdout[-2000:]


def test_rerun_in_a_fresh_process_hits_the_cache_runs_no_check_and_restores_a_fresh_workdir(
    tmp_path: Path, unique_idea: str
) -> None:
    first = tmp_path / "first"
    build_app(idea=unique_idea, workdir=str(first))
    head = git(first, "rev-parse", "HEAD")

    report = run_cli(unique_idea, "--workdir", str(first))
    metrics = report["metrics"]
    assert isinstance(metrics, dict)
    assert metrics["model_requests"] == 0
    assert metrics["cached_agents"] == len(report["agents"])  # type: ignore[arg-type]
    assert metrics["commits"] == 0
    assert git(first, "rev-parse", "HEAD") == head
    # a green build's rerun runs no check: every one of them comes from the cache
    checks = [c for r in report["verification"]["rounds"] for c in r["checks"]]  # type: ignore[index]
    assert checks and all(c["cached"] for c in checks)
    assert report["verification"]["status"] == "passed"  # type: ignore[index]

    fresh = tmp_path / "fresh"
    report = run_cli(unique_idea, "--workdir", str(fresh))
    metrics = report["metrics"]
    assert isinstance(metrics, dict)
    assert metrics["model_requests"] == 0 and metrics["commits"] == 5
    restored = sorted(p.relative_to(fresh) for p in (fresh / "docs").rglob("*.md"))
    assert restored == sorted(p.relative_to(first) for p in (first / "docs").rglob("*.md"))
    for path in restored:
        assert (fresh / path).read_text() == (first / path).read_text()
    assert git(fresh, "rev-parse", "HEAD^{tree}") == git(first, "rev-parse", "HEAD^{tree}")


def test_changing_one_role_reruns_exactly_it_and_its_descendants(
    tmp_path: Path, unique_idea: str
) -> None:
    workdir = tmp_path / "app"
    build_app(idea=unique_idea, workdir=str(workdir))

    team = default_team()
    changed = "UX_DESIGNER"
    for role in team.roles:
        if role.id == changed:
            role.instructions += " Include a dark mode."
    block = f"changed-{uuid.uuid4().hex[:8]}"
    team.save(block)
    result = build_app(idea=unique_idea, workdir=str(workdir), team=block)

    expected = {changed} | plan_phases(team).descendants(changed)
    rerun = {a.role for a in result.agents if not a.cached}
    # the fix agent's view (the whole candidate tree) changed too, and the bug is still there
    expected |= {"CORE_DEV_FIX_1"}
    assert rerun == expected
    assert result.metrics.model_requests == sum(requests_of(r) for r in expected)
    assert {a.role for a in result.agents if a.requests} == expected
    assert result.metrics.commits >= 1


def test_a_cyclic_team_is_refused_before_anything_runs(tmp_path: Path, unique_idea: str) -> None:
    team = default_team()
    for role in team.roles:
        if role.id == "PM":
            role.depends_on = ["UX_RESEARCHER"]
    block = f"cyclic-{uuid.uuid4().hex[:8]}"
    team.save(block)
    with pytest.raises(PlanError, match=r"cycle: .*PM.*UX_RESEARCHER"):
        build_app(idea=unique_idea, workdir=str(tmp_path / "app"), team=block)
    assert not (tmp_path / "app").exists()


def test_a_second_live_run_on_the_same_workdir_fails_fast(tmp_path: Path, unique_idea: str) -> None:
    workdir = tmp_path / "app"
    with (
        workspace_lock(workdir, "the-other-run"),
        pytest.raises(WorkspaceBusy, match="the-other-run"),
    ):
        build_app(idea=unique_idea, workdir=str(workdir))
    assert not (workdir / "docs").exists()


def test_an_unknown_team_block_says_how_to_fix_it(tmp_path: Path, unique_idea: str) -> None:
    with pytest.raises(ValueError, match="no AgentTeam block named 'nope'"):
        build_app(idea=unique_idea, workdir=str(tmp_path / "app"), team="nope")


def test_cli_help_documents_every_option() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "flows.build_app", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0
    for option in ("--workdir", "--team", "--provider", "--credentials", "--budget-usd", "--fresh"):
        assert option in proc.stdout


def test_saved_team_block_loads_back(unique_idea: str) -> None:
    name = f"team-{uuid.uuid4().hex[:8]}"
    default_team().save(name)
    loaded = AgentTeam.load(name)
    assert [r.id for r in loaded.roles] == [r.id for r in default_team().roles]  # type: ignore[attr-defined]


async def test_abuild_app_is_the_same_flow_for_async_callers(
    tmp_path: Path, unique_idea: str
) -> None:
    """Async callers (and the CLI) await abuild_app: blocks load with aload, same result."""
    from blocks.team import Role
    from flows.build_app import abuild_app

    roles = [
        Role(id="PLANNER", title="Planner", phase="planning", track="p", instructions="plan"),
        Role(
            id="BUILDER",
            title="Builder",
            phase="implementation",
            track="i",
            depends_on=["PLANNER"],
            instructions="build",
        ),
    ]
    name = f"async-{uuid.uuid4().hex[:8]}"
    await AgentTeam(roles=roles).asave(name)
    workdir = tmp_path / "app"

    result = await abuild_app(idea=unique_idea, workdir=str(workdir), team=name)

    assert isinstance(result, BuildResult) and result.status == "completed"
    assert [c.phase for c in result.commits] == ["planning", "implementation"]
    assert result.metrics.model_requests == 2 * PER_AGENT
    assert git(workdir, "rev-list", "--count", "HEAD") == "2"
    with pytest.raises(ValueError, match="no AgentTeam block named 'nope'"):
        await abuild_app(idea=unique_idea, workdir=str(tmp_path / "other"), team="nope")
