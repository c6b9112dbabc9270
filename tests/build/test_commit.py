"""The phase boundary: rejected paths land nothing; the API key lands nowhere."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client

from blocks.team import AgentTeam, Role
from flows.build_app import build_app
from tasks.build.offline_script import REQUESTS_PER_AGENT as PER_AGENT
from tasks.build.offline_script import build_reply
from tasks.common.workspace import PathRejected, apply_files
from tasks.testing.messages_api import FakeMessagesAPI, role_of
from tasks.testing.repos import git

KEY = "sk-ant-api03-LEAKCHECK-7f3e9a1b2c4d5e6f-secret"


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
    with pytest.raises(PathRejected, match="leads outside the workdir"):
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


def test_a_symlink_escape_from_an_agent_lands_nothing_of_its_phase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unique_idea: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    workdir = tmp_path / "app"
    workdir.mkdir()
    git(workdir, "init", "-q", "-b", "main")
    (workdir / "escape").symlink_to(outside)
    git(workdir, "add", "escape")
    git(
        workdir, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base with a symlink"
    )

    def script(body: dict[str, Any]) -> dict[str, Any]:
        reply = build_reply(body)
        if role_of(body) == "SNEAKY":
            for block in reply["content"]:
                if block.get("name") == "write_file":
                    block["input"]["path"] = "escape/pwned.txt"
        return reply

    with FakeMessagesAPI(script=script) as api:
        monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.base_url)
        with pytest.raises(
            RuntimeError, match=r"SNEAKY wrote a rejected path: 'escape/pwned.txt' leads outside"
        ):
            build_app(
                idea=unique_idea, workdir=str(workdir), team=_team(f"sneaky-{uuid.uuid4().hex[:8]}")
            )

    assert list(outside.iterdir()) == []
    subjects = git(workdir, "log", "--format=%s").splitlines()
    assert subjects == ["agentmill: planning phase (1 agents)", "base with a symlink"]
    assert not (workdir / "docs" / "good.md").exists()  # GOOD shared the rejected phase
    assert (workdir / "docs" / "planner.md").exists()
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
