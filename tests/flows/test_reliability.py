"""Faults survived, crashes resumed, secrets refused, budgets kept: whole runs against the fake API.

The figures (faults injected, runs completed, requests per agent) are printed
to the terminal; the README's "Reliability" section quotes them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from blocks.team import AgentTeam, Role, default_team
from flows.build_app import build_app
from tasks.agents.scripted import reply_with, turn_of
from tasks.build.offline_script import REQUESTS_PER_AGENT as PER_AGENT
from tasks.build.offline_script import build_reply, requests_of
from tasks.build.planning import plan_phases
from tasks.common.git import blob_id, open_repo
from tasks.common.retry import Backoff
from tasks.common.workspace import STORE_DIR, WorkspaceBusy, workspace_lock
from tasks.model.budget import BudgetExhausted
from tasks.testing.messages_api import FakeMessagesAPI, Fault, role_of
from tasks.testing.repos import CHECKOUT, git, init_repo

ROOT = CHECKOUT
ATTEMPTS = Backoff().max_attempts


def report_line(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with capsys.disabled():
        print(f"\n[reliability] {text}")


def save_team(team: AgentTeam, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    team.save(name)
    return name


FAULTS = [
    [Fault(status=429, headers={"retry-after": "0.2"})] * 3,  # a burst
    [Fault(status=529)],
    [Fault(status=500)],
    [Fault(status=502)],
    [Fault(status=503)],
    [Fault(kind="reset")],
    [Fault(kind="slow", delay_s=2.5)],  # past the 1.5 s tier timeout below
    [Fault(kind="malformed")],
    [Fault(kind="error_event", error_type="overloaded_error")],
]


def test_a_run_survives_every_transient_fault_without_multiplying_retries(
    api: FakeMessagesAPI, tmp_path: Path, unique_idea: str, capsys: pytest.CaptureFixture[str]
) -> None:
    team = default_team()
    team.tier_timeouts_s = {"opus": 1.5, "sonnet": 1.5, "haiku": 1.5}
    plan = plan_phases(team)
    injected: Counter[str] = Counter()
    per_role: dict[str, int] = {}
    for i, role in enumerate(plan.order):
        faults = FAULTS[i % len(FAULTS)]
        api.fail_role(role, *faults)
        per_role[role] = len(faults)
        injected.update(f.kind if f.kind != "status" else str(f.status) for f in faults)

    result = build_app(
        idea=unique_idea, workdir=str(tmp_path / "app"), team=save_team(team, "faulty")
    )

    assert result.status == "completed" and len(result.commits) == len(plan.phases)
    seen = api.requests_by_role()
    for role in seen:  # answered requests + exactly one retry per injected fault
        assert seen[role] == requests_of(role) + per_role.get(role, 0), role
    most = max(requests_of(r) for r in seen)
    assert max(seen.values()) <= most + ATTEMPTS - 1
    committed = git(tmp_path / "app", "ls-tree", "-r", "--name-only", "HEAD", ".tasks")
    assert all(f".tasks/{r}/output.json" in committed for r in plan.order)
    assert git(tmp_path / "app", "status", "--porcelain") == ""
    report_line(
        capsys,
        f"faults injected: {sum(injected.values())} ({dict(injected)}); run completed: 1/1; "
        f"requests per agent: max {max(seen.values())} ({PER_AGENT}-{most} answered + its faults; "
        f"bound {most + ATTEMPTS - 1}); agents committed: {len(plan.order)}/{len(plan.order)}",
    )


def test_a_fault_that_does_not_pass_fails_its_agent_and_keeps_earlier_phases(
    api: FakeMessagesAPI, tmp_path: Path, unique_idea: str, capsys: pytest.CaptureFixture[str]
) -> None:
    workdir = tmp_path / "app"
    api.fail_role("API_DEV", *[Fault(status=529)] * 20)
    with pytest.raises(
        RuntimeError,
        match=rf"agent API_DEV: server error \(529\), still failing after {ATTEMPTS} attempts",
    ):
        build_app(idea=unique_idea, workdir=str(workdir))
    assert api.requests_by_role()["API_DEV"] == ATTEMPTS
    subjects = git(workdir, "log", "--format=%s").splitlines()
    assert subjects == [
        "agentmill: architecture phase (5 agents)",
        "agentmill: planning phase (2 agents)",
    ]
    assert git(workdir, "status", "--porcelain") == ""
    manifest = json.loads((workdir / STORE_DIR / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["agents"]["API_DEV"]["status"] == "failed"
    assert manifest["agents"]["UNIT_TEST_DEV"]["status"] == "skipped"

    # The fault passes: the rerun runs only what is missing.
    api.fail_role("API_DEV")
    api._role_faults.clear()
    before = len(api.requests)
    result = build_app(idea=unique_idea, workdir=str(workdir))
    rerun = Counter(r.role for r in api.requests[before:])
    expected = {"API_DEV"} | plan_phases(default_team()).descendants("API_DEV")
    expected |= {"CORE_DEV_FIX_1"}  # implementation's checks ran for the first time
    assert set(rerun) == expected and result.metrics.commits == 3
    report_line(
        capsys,
        f"persistent 529 on API_DEV: {ATTEMPTS} requests then a clear failure; 2 phases kept; "
        f"rerun after it passed ran {len(expected)} agents, {sum(rerun.values())} requests",
    )


def test_sigkill_mid_implementation_then_rerun_resumes_exactly_once(
    api: FakeMessagesAPI, tmp_path: Path, unique_idea: str, capsys: pytest.CaptureFixture[str]
) -> None:
    workdir = tmp_path / "app"
    hang = {"on": True}
    api.latency = lambda body: 60.0 if hang["on"] and role_of(body) == "WEB_DEV" else 0.0
    command = [sys.executable, "-m", "flows.build_app", unique_idea, "--workdir", str(workdir)]
    first = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        web_dev_waiting = any(r.role == "WEB_DEV" for r in api.requests)
        if (
            web_dev_waiting
            and (workdir / ".git").exists()
            and len(git(workdir, "log", "--format=%H", "--all").split()) >= 2
        ):
            break
        time.sleep(0.1)
    else:
        first.kill()
        pytest.fail("the first run never reached the implementation phase")
    # Let the agents that are not stuck behind WEB_DEV finish and persist their results:
    # wait until no request has come for a while (a loaded machine is slow), then a bit more.
    quiet_since, seen = time.monotonic(), len(api.requests)
    while time.monotonic() - quiet_since < 2.0 and time.monotonic() < deadline:
        time.sleep(0.2)
        if len(api.requests) != seen:
            quiet_since, seen = time.monotonic(), len(api.requests)
    time.sleep(1.5)
    finished = {role for role, n in api.requests_by_role().items() if n >= requests_of(role)}
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert json.loads((workdir / STORE_DIR / "lock").read_text())["pid"] == first.pid
    commits_before = git(workdir, "log", "--format=%s").splitlines()
    assert commits_before == [
        "agentmill: architecture phase (5 agents)",
        "agentmill: planning phase (2 agents)",
    ]

    hang["on"] = False
    before = len(api.requests)
    rerun = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "clearing a stale lock" in rerun.stdout + rerun.stderr

    report = json.loads((workdir / STORE_DIR / "report.json").read_text())
    cached = {a["role"] for a in report["agents"] if a["cached"]}
    assert finished <= cached  # everything that finished before the kill was reused
    ran = {r.role for r in api.requests[before:]}
    assert "WEB_DEV" in ran and not (ran & finished)
    subjects = git(workdir, "log", "--format=%s").splitlines()
    assert len(subjects) == len(set(subjects)) == 5  # each phase committed exactly once
    assert git(workdir, "status", "--porcelain") == ""
    manifest = json.loads((workdir / STORE_DIR / "manifest.json").read_text())
    assert [
        manifest["phases"][p]["commit"]
        for p in ("planning", "architecture", "implementation", "quality", "ops")
    ] == git(workdir, "log", "--reverse", "--format=%H").split()
    report_line(
        capsys,
        f"SIGKILL mid-implementation: {len(finished)} finished agents reused from the cache, "
        f"{len(ran)} agents ran on resume, 5 phases committed once each, tree clean",
    )


def test_a_half_applied_phase_from_a_dead_run_is_rolled_back(
    tmp_path: Path, unique_idea: str, caplog: pytest.LogCaptureFixture
) -> None:
    workdir = tmp_path / "app"
    build_app(idea=unique_idea, workdir=str(workdir))
    head = git(workdir, "rev-parse", "HEAD")
    half = {"docs/pm.md": b"half-written by a killed run", "docs/stray.md": b"never committed"}
    for path, data in half.items():
        (workdir / path).write_bytes(data)
    journal = {
        "phase": "planning",
        "run_id": "dead-run",
        "head": head,
        "written": {path: blob_id(data) for path, data in half.items()},
    }
    (workdir / ".git" / "agentmill").mkdir(exist_ok=True)
    (workdir / ".git" / "agentmill" / "pending-phase.json").write_text(json.dumps(journal))

    result = build_app(idea=unique_idea, workdir=str(workdir))

    assert result.metrics.commits == 0 and git(workdir, "rev-parse", "HEAD") == head
    assert not (workdir / "docs" / "stray.md").exists()
    assert "half-written" not in (workdir / "docs" / "pm.md").read_text()
    assert git(workdir, "status", "--porcelain") == ""
    assert not (workdir / ".git" / "agentmill" / "pending-phase.json").exists()

    assert "rolled back 2 files of phase planning, left half-applied by run dead-run" in caplog.text


HOLD = """
import sys, time
from pathlib import Path
from tasks.common.workspace import workspace_lock
with workspace_lock(Path(sys.argv[1]), "alive"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_stale_lock_is_cleared_and_a_live_one_refuses(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock = tmp_path / STORE_DIR / "lock"
    lock.parent.mkdir()
    lock.write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename, "run_id": "ghost"}))
    with caplog.at_level("WARNING"), workspace_lock(tmp_path, "me"):
        assert json.loads(lock.read_text())["run_id"] == "me"
    assert "clearing a stale lock" in caplog.text and "ghost" in caplog.text
    assert lock.read_text() == ""  # a clean end: nobody named, nothing to clear next time

    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with (
            pytest.raises(WorkspaceBusy, match=rf"in use by run alive \(pid {holder.pid}"),
            workspace_lock(tmp_path, "me"),
        ):
            pass
        assert json.loads(lock.read_text())["run_id"] == "alive"
    finally:
        holder.kill()
        holder.wait()
    with workspace_lock(tmp_path, "after"):  # the kernel let go with the process
        pass


def _two_phase_team(second_tier: str = "haiku") -> AgentTeam:
    return AgentTeam(
        roles=[
            Role(
                id="FIRST",
                title="First",
                phase="planning",
                track="p",
                tier="sonnet",
                instructions="plan",
            ),
            Role(
                id="SECOND",
                title="Second",
                phase="architecture",
                track="a",
                tier=second_tier,
                depends_on=["FIRST"],
                instructions="design",
            ),
        ]
    )


def test_a_key_shaped_string_blocks_its_phase_and_names_file_and_line(
    api: FakeMessagesAPI, tmp_path: Path, unique_idea: str
) -> None:
    leaked = "sk-ant-api03-" + "Q" * 48

    def leaky(body: dict[str, Any]) -> dict[str, Any]:
        reply = build_reply(body)
        if role_of(body) == "SECOND":
            for block in reply["content"]:
                if block.get("name") == "write_file":
                    block["input"]["content"] = f"# config\n\nANTHROPIC_API_KEY={leaked}\n"
        return reply

    api.script = leaky
    workdir = tmp_path / "app"
    with pytest.raises(RuntimeError) as info:
        build_app(
            idea=unique_idea, workdir=str(workdir), team=save_team(_two_phase_team(), "leaky")
        )
    message = str(info.value)
    assert (
        "agent SECOND: docs/second.md line 3 holds what looks like a secret (Anthropic API key)"
        in message
    )
    assert leaked not in message and leaked[:20] not in message
    assert git(workdir, "log", "--format=%s").splitlines() == [
        "agentmill: planning phase (1 agents)"
    ]
    assert not (workdir / "docs" / "second.md").exists()
    assert git(workdir, "status", "--porcelain") == ""


def test_the_budget_stops_before_the_call_that_could_cross_it_and_a_rerun_continues(
    api: FakeMessagesAPI, tmp_path: Path, unique_idea: str
) -> None:
    workdir = tmp_path / "app"
    team = save_team(_two_phase_team(second_tier="opus"), "budget")
    # FIRST (sonnet) may reserve ~$0.084 a call; SECOND's first opus call ~$0.165 cannot fit.
    with pytest.raises(BudgetExhausted) as info:
        build_app(idea=unique_idea, workdir=str(workdir), team=team, budget_usd=0.12)
    message = str(info.value)
    assert "stopped: the budget of $0.1200 is spent" in message and "remains" in message
    assert "phases committed: planning" in message and "larger budget_usd" in message
    assert 0 < info.value.spent < 0.12
    assert api.requests_by_role() == Counter({"FIRST": PER_AGENT})
    assert git(workdir, "log", "--format=%s").splitlines() == [
        "agentmill: planning phase (1 agents)"
    ]

    result = build_app(idea=unique_idea, workdir=str(workdir), team=team, budget_usd=1.0)
    assert result.status == "completed" and result.metrics.cost_usd < 1.0
    assert api.requests_by_role() == Counter(
        {"FIRST": PER_AGENT, "SECOND": PER_AGENT}
    )  # FIRST came from the cache
    assert len(git(workdir, "log", "--format=%s").splitlines()) == 2


def test_the_cli_reports_a_spent_budget_without_a_traceback(
    api: FakeMessagesAPI, tmp_path: Path, unique_idea: str
) -> None:
    team = save_team(_two_phase_team(second_tier="opus"), "budget-cli")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "flows.build_app",
            unique_idea,
            "--workdir",
            str(tmp_path / "app"),
            "--team",
            team,
            "--budget-usd",
            "0.12",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 3
    assert (
        proc.stderr.strip().splitlines()[-1].startswith("agentmill: stopped: the budget of $0.1200")
    )


# --- the write path: every way to put an agent's bytes where they must not go -------

GIT_ATTACKS = {
    "file link": ["git-config"],
    "directory link": ["gitlink/config", "gitlink/hooks/post-commit", "hooks-link/pre-commit"],
    "case": [".Git/config", ".GIT/hooks/pre-commit"],
    "normalisation": [
        ".gi\u200ct/config",
        "\ufeff.git/hooks/pre-commit",
        ".\uff47\uff49\uff54/config",
        ".git./config",
        "git~1/config",
    ],
    "nested .git": ["sub/.git/config", "vendor/lib/.git/hooks/pre-commit"],
    "climbing out": ["docs/../.git/config", ".tasks/../.git/hooks/pre-commit", "/tmp/.git/x"],
}
TREE_ATTACKS = {  # on main, each surfaced only at the commit (or was committed)
    "over a folder": ["reports"],
    "under a file": ["README.md/notes.md"],
    "a 250-character name": ["docs/" + "n" * 250 + ".md"],
    "ignored by .gitignore": ["debug.log", "build/report.txt"],
}
# git's own bookkeeping that a commit changes; everything else in .git must stay as it was.
_COMMIT_TOUCHES = ("objects/", "logs/", "refs/heads/", "index", "agentmill/")


def _payload(marker: str, path: str) -> str:
    if "hooks" in path:
        return f"#!/bin/sh\ntouch {marker}\n"
    return f"[core]\n\tfsmonitor = touch {marker}\n"


def _git_snapshot(git_dir: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(git_dir)): p.read_bytes()
        for p in git_dir.rglob("*")
        if p.is_file() and not str(p.relative_to(git_dir)).startswith(_COMMIT_TOUCHES)
    }


def _all_bytes_under(git_dir: Path) -> bytes:
    """Every file of .git, loose objects decompressed: where an agent's bytes would show."""
    chunks = []
    for p in git_dir.rglob("*"):
        if not p.is_file():
            continue
        data = p.read_bytes()
        if p.parent.parent.name == "objects" and len(p.parent.name) == 2:
            data = zlib.decompress(data)
        chunks.append(data)
    return b"\n".join(chunks)


def test_every_way_to_put_an_agents_bytes_under_git_is_refused_at_the_tool(
    api: FakeMessagesAPI, tmp_path: Path, unique_idea: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Links, look-alike names, nested .git, climbing out: .git stays byte-for-byte as it was.

    On main, the file link rewrote .git/config (a core.fsmonitor there runs a command
    at the next git call), the directory link wrote hooks, and .Git/... and
    .gi<ZWNJ>t/... passed the check; the tree problems surfaced only at the commit.
    """
    workdir = init_repo(tmp_path / "app")
    for link, target in {
        "git-config": ".git/config",
        "gitlink": ".git",
        "hooks-link": ".git/hooks",
    }.items():
        (workdir / link).symlink_to(target)
    git(workdir, "add", "git-config", "gitlink", "hooks-link")
    git(workdir, "commit", "-qm", "links into .git")
    open_repo(workdir).close()  # agentmill's run-state excludes, written once up front
    before = _git_snapshot(workdir / ".git")
    marker_dir = tmp_path / "markers"
    marker_dir.mkdir()
    tries = [
        (cls, p)
        for attacks in (GIT_ATTACKS, TREE_ATTACKS)
        for cls, paths in attacks.items()
        for p in paths
    ]
    markers = {p: marker_dir / f"ran-{i}" for i, (_, p) in enumerate(tries)}

    def attacker(body: dict[str, Any]) -> dict[str, Any]:
        turn = turn_of(body)
        if turn is not None and turn.role == "SECOND" and turn.step == 2:
            calls = [
                ("write_file", {"path": p, "content": _payload(str(markers[p]), p)})
                for _, p in tries
            ]
            return reply_with(body, turn, "Writing.", calls)
        return build_reply(body)

    api.script = attacker
    result = build_app(
        idea=unique_idea, workdir=str(workdir), team=save_team(_two_phase_team(), "attack")
    )

    assert result.status == "completed"
    second = next(a for a in result.agents if a.role == "SECOND")
    refused = {r.path for r in second.refusals}
    git_dir = workdir / ".git"
    assert _git_snapshot(git_dir) == before  # config, hooks, info, HEAD: byte for byte
    assert list((git_dir / "agentmill").iterdir()) == []  # no journal left behind
    everything = _all_bytes_under(git_dir)
    tree = b"".join(
        p.read_bytes() for p in workdir.rglob("*") if p.is_file() and ".git" not in p.parts
    )
    escaped = {p for p, m in markers.items() if str(m).encode() in everything + tree}
    git(workdir, "status")  # would run a planted fsmonitor
    git(workdir, "commit", "--allow-empty", "-qm", "probe")  # ... and planted hooks
    assert [m for m in markers.values() if m.exists()] == []  # no command of the agent ran
    assert escaped == set() and refused == {p for _, p in tries}
    for attacks in (GIT_ATTACKS, TREE_ATTACKS):
        for cls, paths in attacks.items():
            report_line(
                capsys,
                f"write path, {cls}: bad paths tried: {len(paths)}, refused at the tool: "
                f"{sum(p in refused for p in paths)}, escaped: {sum(p in escaped for p in paths)}",
            )


def test_two_agents_writing_one_path_is_a_conflict_naming_both(
    api: FakeMessagesAPI, tmp_path: Path, unique_idea: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """On main, the second agent's file silently replaced the first one's."""
    team = _two_phase_team()
    team.roles.append(team.roles[1].model_copy(update={"id": "THIRD", "title": "Third"}))

    def same_path(body: dict[str, Any]) -> dict[str, Any]:
        reply = build_reply(body)
        if role_of(body) in ("SECOND", "THIRD"):
            for block in reply["content"]:
                if block.get("name") == "write_file":
                    block["input"]["path"] = "docs/design.md"
        return reply

    api.script = same_path
    workdir = tmp_path / "app"
    with pytest.raises(RuntimeError, match=r"agents SECOND and THIRD both wrote docs/design\.md"):
        build_app(idea=unique_idea, workdir=str(workdir), team=save_team(team, "conflict"))
    assert not (workdir / "docs" / "design.md").exists()
    assert git(workdir, "log", "--format=%s").splitlines() == [
        "agentmill: planning phase (1 agents)"
    ]
    report_line(
        capsys,
        "write path, two agents of one phase on one path: conflicts tried: 1, "
        "refused at the merge naming both agents: 1, escaped: 0",
    )


@pytest.mark.timeout(300)
def test_a_phase_subflow_prefect_cannot_create_fails_the_build_instead_of_hanging(
    api: FakeMessagesAPI, tmp_path: Path, unique_idea: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a busy SQLite server, creating a subflow's parent task run can meet "database is
    locked" past the Prefect client's five retries; the subflow call then raises and the
    phase's agents never start. Seen in the fleet benchmark: the agents of later phases,
    which read them, waited forever, and so did the build. Now the build ends, saying why."""
    import httpx
    from prefect.client.orchestration import PrefectClient
    from prefect.exceptions import PrefectHTTPStatusError

    create = PrefectClient.create_task_run
    subflows = 0

    async def create_task_run(self: PrefectClient, task: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal subflows
        if task.name == "run_phase":  # the task run standing for a subflow in its parent
            subflows += 1
            if subflows == 2:  # architecture's: the phases are created one after another
                request = httpx.Request("POST", "http://127.0.0.1/api/task_runs/")
                response = httpx.Response(503, request=request, json={"exception_message":
                                          "Service Unavailable"})  # fmt: skip
                raise PrefectHTTPStatusError.from_httpx_error(
                    httpx.HTTPStatusError("503 Service Unavailable", request=request,
                                          response=response)
                )  # fmt: skip
        return await create(self, task, *args, **kwargs)

    monkeypatch.setattr(PrefectClient, "create_task_run", create_task_run)
    workdir = tmp_path / "app"
    plan = plan_phases(default_team())
    with pytest.raises(RuntimeError, match=r"build failed .* First error: .*503"):
        build_app(idea=unique_idea, workdir=str(workdir))
    planning, architecture = plan.phases[0], plan.phases[1]
    assert set(api.requests_by_role()) == set(planning.roles)  # nothing after it started
    assert git(workdir, "log", "--format=%s").splitlines() == [
        f"agentmill: planning phase ({len(planning.roles)} agents)"
    ]
    manifest = json.loads((workdir / STORE_DIR / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    assert manifest["phases"][architecture.name]["status"] == "failed"
    for role in architecture.roles:
        entry = manifest["agents"][role]
        assert entry["status"] == "skipped", role
        assert f"phase {architecture.name}'s subflow failed" in entry["error"], role
    later = [r for p in plan.phases[2:] for r in p.roles]
    assert {manifest["agents"][r]["status"] for r in later} == {"skipped"}
