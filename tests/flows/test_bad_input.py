"""Bad input gets a clear error, and nothing is lost: ideas, workdirs, agent output."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from blocks.team import default_team
from flows.build_app import build_app, main
from tasks.agents.errors import AgentError, ToolError
from tasks.agents.job import AgentJob, AgentSettings
from tasks.agents.loop import run_tool_loop
from tasks.agents.tools import AgentView, Limits, Submission, call_tool
from tasks.build.offline_script import build_reply
from tasks.common.git import EMPTY_TREE, RepoStateError
from tasks.common.retry import Backoff
from tasks.common.workspace import WorkdirError
from tasks.model.endpoint import Endpoint, use_endpoint
from tasks.testing.messages_api import FakeMessagesAPI
from tasks.testing.repos import git


@pytest.mark.parametrize(
    ("idea", "message"),
    [
        ("", "the idea is empty"),
        ("   \n\t ", "the idea is empty"),
        ("x" * 1_000_000, "the idea is 1000000 characters, over 20000"),
        ("a todo app\x00", "control characters"),
        ("a todo \x1b[31mapp", "control characters"),
    ],
    ids=["empty", "whitespace", "1MB", "NUL", "escape"],
)
def test_bad_ideas_are_refused_before_anything_is_written(
    tmp_path: Path, idea: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        build_app(idea=idea, workdir=str(tmp_path / "app"))
    assert not (tmp_path / "app").exists()


def test_the_cli_refuses_a_bad_idea_with_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["   ", "--workdir", "unused"])
    assert exit_info.value.code == 2 and "the idea is empty" in capsys.readouterr().err


def test_a_workdir_that_is_a_file(tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    with pytest.raises(WorkdirError, match="is a file, not a directory"):
        build_app(idea="a todo app", workdir=str(target))
    assert target.read_text() == "mine"


def test_an_unwritable_workdir(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        target = Path("/sys/agentmill-test/app")  # sysfs refuses even root
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        target = locked / "app"
    with pytest.raises(WorkdirError, match="cannot write to"):
        build_app(idea="a todo app", workdir=str(target))


def test_a_workdir_inside_a_git_directory(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    with pytest.raises(WorkdirError, match=r"inside a \.git directory"):
        build_app(idea="a todo app", workdir=str(tmp_path / ".git" / "app"))
    assert not (tmp_path / ".git" / "app").exists()


def test_uncommitted_work_is_never_clobbered(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "pm.md").write_text("committed")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "mine")
    (tmp_path / "docs" / "pm.md").write_text("my edit in progress")
    (tmp_path / "scratch.txt").write_text("untracked work")
    with pytest.raises(RepoStateError, match=r"uncommitted changes \(docs/pm.md, scratch.txt\)"):
        build_app(idea="a todo app", workdir=str(tmp_path))
    assert (tmp_path / "docs" / "pm.md").read_text() == "my edit in progress"
    assert (tmp_path / "scratch.txt").read_text() == "untracked work"
    assert git(tmp_path, "log", "--format=%s").split() == ["mine"]


def test_a_detached_head_is_refused_with_the_fix(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "a.txt").write_text("a")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "first")
    git(tmp_path, "checkout", "-q", "--detach")
    with pytest.raises(RepoStateError, match="detached HEAD; check out a branch"):
        build_app(idea="a todo app", workdir=str(tmp_path))


# --- agent output -----------------------------------------------------------


@pytest.fixture
def view(tmp_path: Path) -> AgentView:
    return AgentView(
        workdir=tmp_path, base_tree=EMPTY_TREE, brief={}, upstream=[], limits=Limits(1000, 3)
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"path": "/etc/passwd", "content": "x"}, "is absolute"),
        ({"path": "../up.txt", "content": "x"}, "climbs out"),
        ({"path": ".git/config", "content": "x"}, "inside .git"),
        ({"path": "big.txt", "content": "x" * 1001}, "over the cap of 1000"),
        ({"path": "bin.dat", "content": "PK\x00\x03"}, "NUL bytes"),
        ({"path": "bad.txt", "content": "broken \ud800 surrogate"}, "not valid UTF-8"),
        ({"path": "a.txt"}, "missing argument 'content'"),
        ({"path": 42, "content": "x"}, "'path' must be a string"),
    ],
    ids=["absolute", "dotdot", "git", "size-cap", "binary", "non-utf8", "no-content", "not-str"],
)
async def test_bad_writes_are_refused_to_the_model(
    view: AgentView, args: dict[str, Any], message: str
) -> None:
    with pytest.raises(ToolError, match=message):
        await call_tool(view, "write_file", args)
    assert view.changes == {}


async def test_files_per_agent_are_capped(view: AgentView) -> None:
    for i in range(3):
        await call_tool(view, "write_file", {"path": f"f{i}.txt", "content": "x"})
    with pytest.raises(ToolError, match="at most 3 files per agent"):
        await call_tool(view, "write_file", {"path": "f3.txt", "content": "x"})


async def test_unknown_tools_empty_submits_and_non_objects(view: AgentView) -> None:
    with pytest.raises(ToolError, match="unknown tool 'rm_rf'"):
        await call_tool(view, "rm_rf", {})
    with pytest.raises(ToolError, match="'summary' must not be empty"):
        await call_tool(view, "submit", {"summary": "  "})
    with pytest.raises(ToolError, match="must be an object"):
        await call_tool(view, "read_file", "README.md")
    with pytest.raises(ToolError, match="'decisions' must be a list of strings"):
        await call_tool(view, "submit", {"summary": "ok", "decisions": "one"})
    done = await call_tool(view, "submit", {"summary": "ok", "decisions": ["d"]})
    assert isinstance(done, Submission) and done.decisions == ["d"]


async def _run_pm(api: FakeMessagesAPI, tmp_path: Path, max_turns: int = 4) -> Any:
    role = next(r for r in default_team().roles if r.id == "PM")
    job = AgentJob(
        role=role,
        settings=AgentSettings(model="claude-haiku-5-5", max_turns=max_turns, timeout_s=10),
        provider="anthropic",
        idea="a todo app",
        base_tree=EMPTY_TREE,
        workdir=str(tmp_path),
    )
    endpoint = Endpoint("anthropic", base_url=api.base_url, api_key=SecretStr("sk-test"))
    with use_endpoint(endpoint):
        return await run_tool_loop(job, Backoff(max_attempts=2, base_delay_s=0.01))


async def test_an_agent_that_never_submits_fails_with_its_name(
    api: FakeMessagesAPI, tmp_path: Path
) -> None:
    def chatter(body: dict[str, Any]) -> dict[str, Any]:
        reply = build_reply(body)
        reply["content"] = [{"type": "text", "text": "Let me think about it some more."}]
        reply["stop_reason"] = "end_turn"
        return reply

    api.script = chatter
    with pytest.raises(AgentError, match="agent PM did not submit within 4 turns"):
        await _run_pm(api, tmp_path)
    assert len(api.requests) == 2  # one answer, one reminder, then it gives up


async def test_an_agent_that_submits_nothing_fails_with_the_reason(
    api: FakeMessagesAPI, tmp_path: Path
) -> None:
    def empty_submit(body: dict[str, Any]) -> dict[str, Any]:
        reply = build_reply(body)
        for block in reply["content"]:
            if block.get("name") == "submit":
                block["input"] = {"summary": ""}
        return reply

    def always_submit_empty(body: dict[str, Any]) -> dict[str, Any]:
        reply = empty_submit(body)
        steps = sum(1 for m in body["messages"] if m["role"] == "assistant")
        if steps >= 2:  # keep answering with the same empty submit
            reply["content"] = [
                {
                    "type": "tool_use",
                    "id": f"toolu_e{steps}",
                    "name": "submit",
                    "input": {"summary": ""},
                }
            ]
            reply["stop_reason"] = "tool_use"
        return reply

    api.script = always_submit_empty
    with pytest.raises(
        AgentError, match=r"did not submit within 4 turns \(its last tool error: .*summary"
    ):
        await _run_pm(api, tmp_path)
    assert len(api.requests) == 4
