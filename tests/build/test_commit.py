"""The phase boundary: rejected paths land nothing; the API key lands nowhere."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client

from blocks.team import AgentTeam, Role
from flows.build_app import build_app
from tasks.agents.scripted import reply_with, turn_of
from tasks.build.commit import recover_interrupted_phase
from tasks.build.offline_script import REQUESTS_PER_AGENT as PER_AGENT
from tasks.build.offline_script import build_reply
from tasks.common.git import HeadMoved, blob_id
from tasks.common.workspace import PathRejected, apply_files
from tasks.testing.messages_api import FakeMessagesAPI, role_of
from tasks.testing.repos import git, init_repo

KEY = "sk-ant-api03-LEAKCHECK-7f3e9a1b2c4d5e6f-secret"
PAYLOAD = "[core]\n\tfsmonitor = touch pwned\n"


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("../outside.txt", "climbs out"),
        ("/etc/passwd", "absolute"),
        (".git/hooks/pre-commit", "inside .git"),
        (".tasks/manifest.json", "only the flow writes"),
        ("a/../../b", "climbs out"),
        ("", "empty"),
    ],
)
def test_a_bad_path_rejects_the_whole_phase(tmp_path: Path, path: str, reason: str) -> None:
    changes = {"GOOD": {"docs/good.md": "fine"}, "BAD": {path: "evil"}}
    with pytest.raises(PathRejected, match=f"agent BAD wrote a rejected path: .*{reason}"):
        apply_files(tmp_path, changes)
    assert not (tmp_path / "docs").exists()


def test_a_path_through_a_symlink_out_or_onto_a_directory_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "outside").mkdir()
    work = tmp_path / "work"
    (work / "dir").mkdir(parents=True)
    (work / "link").symlink_to(tmp_path / "outside")
    with pytest.raises(PathRejected, match="a symbolic link that leads outside the workdir"):
        apply_files(work, {"A": {"link/x.txt": "x"}})
    with pytest.raises(PathRejected, match="is a directory"):
        apply_files(work, {"A": {"dir": "x"}})
    assert list((tmp_path / "outside").iterdir()) == []


def _team(name: str) -> str:
    roles = [
        Role(id="PLANNER", title="Planner", phase="planning", track="p", instructions="plan"),
        Role(
            id="GOOD",
            title="Good",
            phase="architecture",
            track="a",
            depends_on=["PLANNER"],
            instructions="ok",
        ),
        Role(
            id="SNEAKY",
            title="Sneaky",
            phase="architecture",
            track="a",
            depends_on=["PLANNER"],
            instructions="x",
        ),
    ]
    AgentTeam(roles=roles).save(name)
    return name


def test_writes_through_links_are_refused_at_the_tool_counted_and_reported(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    unique_idea: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every write SNEAKY tries is refused as it asks; the run says so in log and report."""
    outside = tmp_path / "outside"
    outside.mkdir()
    workdir = tmp_path / "app"
    workdir.mkdir()
    git(workdir, "init", "-q", "-b", "main")
    (workdir / "escape").symlink_to(outside)
    (workdir / "git-config").symlink_to(".git/config")
    git(workdir, "add", "escape", "git-config")
    git(workdir, "commit", "-qm", "base with symlinks")
    config = (workdir / ".git" / "config").read_bytes()
    tries = ["escape/pwned.txt", "git-config", ".Git/config"]

    def script(body: dict[str, Any]) -> dict[str, Any]:
        turn = turn_of(body)
        if turn is not None and turn.role == "SNEAKY" and turn.step == 2:
            writes = [("write_file", {"path": p, "content": PAYLOAD}) for p in tries]
            return reply_with(body, turn, "Writing.", writes)
        return build_reply(body)

    with FakeMessagesAPI(script=script) as api:
        monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.base_url)
        result = build_app(
            idea=unique_idea, workdir=str(workdir), team=_team(f"sneaky-{uuid.uuid4().hex[:8]}")
        )

    assert list(outside.iterdir()) == [] and (workdir / ".git" / "config").read_bytes() == config
    assert result.status == "completed" and (workdir / "docs" / "good.md").exists()
    sneaky = next(a for a in result.agents if a.role == "SNEAKY")
    assert sneaky.refused == 3 and sneaky.files == 0
    assert [r.path for r in sneaky.refusals] == tries
    assert all(r.tool == "write_file" for r in sneaky.refusals)
    assert result.metrics.refused_calls == 3
    report = json.loads((workdir / ".tasks" / "report.json").read_text())
    assert report["metrics"]["refused_calls"] == 3
    assert [a["refused"] for a in report["agents"] if a["role"] == "SNEAKY"] == [3]
    markdown = (workdir / ".tasks" / "report.md").read_text()
    assert (
        "**3 tool calls refused**" in markdown
        and "| SNEAKY | write_file | `git-config` |" in markdown
    )
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    for path in tries:
        assert any(f"agent SNEAKY: write_file refused for {path!r}" in w for w in warnings)

    async def artifact() -> str:
        async with get_client() as client:
            found = await client.read_artifacts()
        return next(str(a.data) for a in found if "SNEAKY | write_file" in str(a.data))

    assert "escape/pwned.txt" in asyncio.run(artifact())
    assert git(workdir, "status", "--porcelain") == ""


def test_the_api_key_appears_in_no_log_artifact_result_store_or_commit(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    unique_idea: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    workdir = tmp_path / "app"
    with FakeMessagesAPI() as api:
        monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.base_url)
        result = build_app(
            idea=unique_idea, workdir=str(workdir), team=_team(f"leak-{uuid.uuid4().hex[:8]}")
        )
    assert result.provider == "anthropic" and result.metrics.model_requests == 3 * PER_AGENT
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in api.requests)

    haystacks = {"captured logs": caplog.text, "result": result.model_dump_json()}
    haystacks["git"] = git(workdir, "log", "-p", "--all", "--format=%H%n%B")
    for path in [*workdir.rglob("*"), *Path(os.environ["PREFECT_HOME"]).rglob("*")]:
        if (
            path.is_file()
            and ".git" not in path.parts
            and path.suffix not in {".db", ".db-wal", ".db-shm"}
        ):
            haystacks[str(path)] = path.read_bytes().decode("utf-8", errors="replace")

    async def from_api() -> dict[str, str]:
        # Events: the session server does not store them (see conftest); the
        # deployment test searches the stored events of a full server instead.
        async with get_client() as client:
            await asyncio.sleep(1.0)  # the log handler ships batches every 0.3 s
            logs = await client.read_logs()
            artifacts = await client.read_artifacts()
            flow_runs = await client.read_flow_runs()
        return {
            "api logs": "\n".join(log.message for log in logs),
            "api artifacts": "\n".join(str(a.data) for a in artifacts),
            "api flow-run parameters": "\n".join(str(r.parameters) for r in flow_runs),
        }

    haystacks.update(asyncio.run(from_api()))
    assert unique_idea in haystacks["api flow-run parameters"]  # the search does reach them
    leaks = [where for where, text in haystacks.items() if KEY in text or KEY[:24] in text]
    assert leaks == []


def _run(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    idea: str,
    script: Any = build_reply,
    workdir: Path | None = None,
    **kwargs: Any,
) -> Any:
    """build_app with the three-role team against the fake Messages API running `script`."""
    with FakeMessagesAPI(script=script) as api:
        monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.base_url)
        team = kwargs.pop("team", None) or _team(f"t-{uuid.uuid4().hex[:8]}")
        return build_app(idea=idea, workdir=str(workdir or tmp_path / "app"), team=team, **kwargs)


def _when(role: str, action: Any) -> Any:
    """A script that runs `action` once, as `role` sends its first request."""
    done: list[bool] = []

    def script(body: dict[str, Any]) -> dict[str, Any]:
        turn = turn_of(body)
        if turn is not None and turn.role == role and not done:
            done.append(True)
            action()
        return build_reply(body)

    return script


def test_a_file_the_user_staged_during_the_run_rides_along_in_no_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unique_idea: str
) -> None:
    """On main, a phase commit took the whole index: the user's staged file went into it."""
    workdir = init_repo(tmp_path / "app")

    def stage() -> None:
        (workdir / "mine.txt").write_text("my work in progress\n")
        git(workdir, "add", "mine.txt")

    result = _run(tmp_path, monkeypatch, unique_idea, _when("GOOD", stage), workdir=workdir)

    assert result.status == "completed" and len(result.commits) == 2
    for commit in result.commits:
        assert "mine.txt" not in git(workdir, "show", "--name-only", "--format=", commit.sha)
    assert git(workdir, "diff", "--cached", "--name-only") == "mine.txt"  # still staged
    assert git(workdir, "status", "--porcelain") == "A  mine.txt"  # the phases are clean


def test_a_commit_made_during_the_run_is_never_built_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unique_idea: str
) -> None:
    """On main, the phase commit went on top of the user's, taking their index with it."""
    workdir = init_repo(tmp_path / "app")

    def commit() -> None:
        deadline = time.monotonic() + 60  # after the planning commit, so that one lands
        while "planning phase" not in git(workdir, "log", "-1", "--format=%s"):
            assert time.monotonic() < deadline, "the planning phase never committed"
            time.sleep(0.05)
        (workdir / "README.md").write_text("# reports\n\nMy edit, committed mid-run.\n")
        while True:  # agentmill may hold .git/index.lock for a moment, as any git would
            try:
                git(workdir, "commit", "-qam", "my commit, made while agentmill runs")
                return
            except subprocess.CalledProcessError:
                assert time.monotonic() < deadline, "the index stayed locked"
                time.sleep(0.05)

    with pytest.raises(RuntimeError, match="moved during the run") as info:
        _run(tmp_path, monkeypatch, unique_idea, _when("GOOD", commit), workdir=workdir)
    assert "rerun with fresh" in str(info.value)
    subjects = git(workdir, "log", "--format=%s").splitlines()
    assert subjects[:2] == [
        "my commit, made while agentmill runs",
        "agentmill: planning phase (1 agents)",
    ]
    assert not (workdir / "docs" / "good.md").exists()
    assert git(workdir, "status", "--porcelain") == ""


def test_a_file_written_during_the_run_where_an_agent_writes_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unique_idea: str
) -> None:
    """On main, the phase overwrote it: the user's file was lost without a word."""
    workdir = init_repo(tmp_path / "app")
    mine = workdir / "docs" / "good.md"

    def draft() -> None:
        mine.parent.mkdir(exist_ok=True)
        mine.write_text("my own notes, not committed yet\n")

    with pytest.raises(RuntimeError, match=r"docs/good\.md changed in .* during the run"):
        _run(tmp_path, monkeypatch, unique_idea, _when("GOOD", draft), workdir=workdir)
    assert mine.read_text() == "my own notes, not committed yet\n"
    assert not (workdir / "docs" / "sneaky.md").exists()  # nothing of the phase landed


def test_a_rerun_never_reverts_a_later_commit_of_the_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unique_idea: str
) -> None:
    """On main, the rerun re-applied the cached files over the user's edit and committed that."""
    workdir = tmp_path / "app"
    team = _team(f"rerun-{uuid.uuid4().hex[:8]}")
    _run(tmp_path, monkeypatch, unique_idea, workdir=workdir, team=team)
    doc = workdir / "docs" / "good.md"
    doc.write_text(doc.read_text() + "\nMy edit of the generated design.\n")
    git(workdir, "commit", "-qam", "my edit")
    head = git(workdir, "rev-parse", "HEAD")

    with pytest.raises(HeadMoved, match=r"has moved on since agentmill's last run") as info:
        _run(tmp_path, monkeypatch, unique_idea, workdir=workdir, team=team)
    assert "--fresh" in str(info.value)
    assert git(workdir, "rev-parse", "HEAD") == head and "My edit" in doc.read_text()

    again = _run(tmp_path, monkeypatch, unique_idea, workdir=workdir, team=team, fresh=True)
    assert again.status == "completed" and again.base_tree == git(
        workdir, "rev-parse", f"{head}^{{tree}}"
    )
    assert head in git(workdir, "rev-list", "HEAD").split()  # built on top of the edit
    after = _run(tmp_path, monkeypatch, unique_idea, workdir=workdir, team=team)
    assert after.metrics.commits == 0  # and the run after that is a plain rerun again


def test_a_journal_from_a_commit_or_through_a_link_deletes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unique_idea: str
) -> None:
    """On main, a committed .tasks/pending-phase.json made the next run delete outside files."""
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.txt"
    victim.write_text("someone else's file\n")
    workdir = tmp_path / "app"
    workdir.mkdir()
    (workdir / "link").symlink_to(outside)
    planted = {
        "phase": "x",
        "run_id": "evil",
        "paths": ["link/victim.txt"],
    }
    (workdir / ".tasks").mkdir()
    (workdir / ".tasks" / "pending-phase.json").write_text(json.dumps(planted))
    git(workdir, "init", "-q", "-b", "main")
    git(workdir, "add", "-f", ".")
    git(workdir, "commit", "-qm", "a tree carrying a journal")
    # And one in git's own directory, naming the victim by its real content.
    written = {
        p: blob_id(victim.read_bytes()) for p in ("link/victim.txt", "../outside/victim.txt")
    }
    state = workdir / ".git" / "agentmill"
    state.mkdir()
    (state / "pending-phase.json").write_text(json.dumps({"phase": "x", "written": written}))

    result = _run(tmp_path, monkeypatch, unique_idea, workdir=workdir)

    assert result.status == "completed"
    assert victim.read_text() == "someone else's file\n"
    assert not (state / "pending-phase.json").exists()


def test_a_users_edit_after_a_crash_is_not_rolled_back(tmp_path: Path) -> None:
    """Only files that still hold what the dead run wrote are put back."""
    workdir = init_repo(tmp_path / "app")
    head = git(workdir, "rev-parse", "HEAD")
    (workdir / "README.md").write_text("the dead run's version\n")
    (workdir / "new.md").write_text("the dead run's new file\n")
    journal = {
        "phase": "p",
        "run_id": "dead",
        "head": head,
        "written": {
            "README.md": blob_id(b"the dead run's version\n"),
            "new.md": blob_id(b"the dead run's new file\n"),
            "storage/memory.py": blob_id(b"what the dead run meant to write\n"),
        },
    }
    (workdir / ".git" / "agentmill").mkdir()
    (workdir / ".git" / "agentmill" / "pending-phase.json").write_text(json.dumps(journal))
    (workdir / "storage" / "memory.py").write_text("# the user's edit after the crash\n")

    recover_interrupted_phase(workdir)

    assert git(workdir, "status", "--porcelain") == "M storage/memory.py"
    assert (workdir / "storage" / "memory.py").read_text() == "# the user's edit after the crash\n"
    assert not (workdir / "new.md").exists()


def test_a_key_in_an_agents_words_is_not_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unique_idea: str
) -> None:
    """On main, only files were scanned: a key in a summary landed in output.json."""
    leaked = "AWS_KEY_AKIA" + "Q7ZJ3K2L9M4N5P6R"

    def talkative(body: dict[str, Any]) -> dict[str, Any]:
        reply = build_reply(body)
        if role_of(body) == "GOOD":
            for block in reply["content"]:
                if block.get("name") == "submit":
                    block["input"]["summary"] = f"Set {leaked} in the deploy settings."
                    block["input"]["decisions"] = ["token: MY_ghp_" + "x" * 36]
        return reply

    workdir = tmp_path / "app"
    with pytest.raises(RuntimeError) as info:
        _run(tmp_path, monkeypatch, unique_idea, talkative, workdir=workdir)
    message = str(info.value)
    assert (
        "agent GOOD: its summary line 1 holds what looks like a secret (AWS access key id)"
        in message
    )
    assert (
        "agent GOOD: its decisions line 1 holds what looks like a secret (GitHub token)" in message
    )
    assert leaked[8:] not in message
    assert not (workdir / ".tasks" / "GOOD").exists()
    assert leaked not in git(workdir, "log", "--all", "-p")
