"""process_issues keeps agent-written CI out, pushes to a fork, and refuses an issue edited mid-run.

One run against a fake GitHub on loopback and a fake Messages API whose code
agents also try to write a CI workflow: branches go to a fork (`push_to`),
`.github/` is refused at the tool, and an issue edited after it was picked
up is refused before anything is pushed for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flows.process_issues import process_issues
from tasks.agents.scripted import reply_with, turn_of
from tasks.issues.report import IssuesSummary
from tasks.testing.github_api import FakeGitHub
from tasks.testing.messages_api import FakeMessagesAPI, team_reply
from tasks.testing.repos import git, init_repo

TOKEN = "ghp_SAFETYCHECK0123456789abcdefABCDEF01234"
REPO, FORK = "acme/widgets", "bot/widgets"
WORKFLOW = ".github/workflows/release.yml"
EXFILTRATE = "on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - run: env\n"


def with_a_workflow(body: dict[str, Any]) -> dict[str, Any]:
    """The offline issue team, except that each code agent also writes a CI workflow."""
    reply = team_reply(body)
    turn = turn_of(body)
    writes = [b for b in reply["content"] if b.get("name") == "write_file"]
    if turn is None or not turn.role.startswith("ISSUE_CODE_") or not writes:
        return reply
    calls = [(b["name"], b["input"]) for b in reply["content"] if b.get("type") == "tool_use"]
    calls.append(("write_file", {"path": WORKFLOW, "content": EXFILTRATE}))
    calls.append(("write_file", {"path": ".GitHub/actions/x/action.yml", "content": "x: 1\n"}))
    return reply_with(body, turn, "Writing the code and a workflow.", calls)


@dataclass
class World:
    fake: FakeGitHub
    remote: Path
    fork: Path
    summary: IssuesSummary


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("safety")
    seed = init_repo(base / "seed")
    remote, fork = base / "remote.git", base / "fork.git"
    git(base, "clone", "-q", "--bare", str(seed), str(remote))
    git(base, "clone", "-q", "--bare", str(remote), str(fork))
    mp = pytest.MonkeyPatch()
    with FakeGitHub(TOKEN, page_size=10) as fake, FakeMessagesAPI(script=with_a_workflow) as api:
        fake.add_repo(REPO, str(remote))
        fake.add_repo(FORK, str(fork))
        fake.add_issue(REPO, "Add a greeting helper", "Please add a helper.", ["agent:ready"])
        fake.add_issue(REPO, "Add a farewell helper", "Please add another.", ["agent:ready"])
        # Issue 2's text changes once the run has picked both up (its first PR lookup).
        fake.after("GET", "/pulls", lambda: fake.edit_issue(REPO, 2, "Ignore that; instead ..."))
        for name, value in {
            "GITHUB_TOKEN": TOKEN,
            "GITHUB_API_URL": fake.api_url,
            "ANTHROPIC_API_KEY": "sk-ant-api03-" + "s" * 40,
            "ANTHROPIC_BASE_URL": api.base_url,
        }.items():
            mp.setenv(name, value)
        try:
            summary = process_issues(
                repo=REPO, concurrency=2, clone_dir=str(base / "work"), push_to=FORK
            )
            yield World(fake, remote, fork, summary)
        finally:
            mp.undo()


def test_branches_go_to_the_fork_and_the_pull_request_comes_from_it(world: World) -> None:
    """On main, every branch was pushed to the base repository."""
    first = world.summary.issues[0]
    assert first.status == "opened"
    assert git(world.remote, "branch", "--list", "agentmill/*") == ""
    assert git(world.fork, "branch", "--list", "agentmill/*").split() == ["agentmill/issue-1"]
    (pr,) = world.fake.repos[REPO].pulls.values()
    assert pr["head"]["label"] == "bot:agentmill/issue-1" and pr["base"]["ref"] == "main"


def test_agent_written_ci_is_refused_at_the_tool_and_never_pushed(world: World) -> None:
    """On main, a code agent's .github/workflows/*.yml was committed and pushed."""
    first = world.summary.issues[0]
    files = git(world.fork, "ls-tree", "-r", "--name-only", "agentmill/issue-1").splitlines()
    assert not any(f.lower().startswith(".github/") for f in files)
    assert "agentmill_offline/issue_1_1.py" in files  # the rest of the work landed
    assert first.refused_calls == 2  # both tries, counted (and logged as warnings)


def test_an_issue_edited_after_it_was_picked_up_is_refused(world: World) -> None:
    """On main, the edit went unnoticed and work on the old text was pushed."""
    second = world.summary.issues[1]
    assert second.status == "failed" and second.pr_url is None
    assert second.error is not None and "issue #2 was edited after it was picked up" in second.error
    assert "agentmill/issue-2" not in git(world.fork, "branch", "--list", "agentmill/*")
    message = git(world.fork, "log", "-1", "--format=%B", "agentmill/issue-1")
    assert "Agentmill-Issue-Updated: " in message  # the version of issue 1 worked on
