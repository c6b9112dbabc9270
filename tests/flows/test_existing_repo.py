"""Building on an existing repository: nested trees, odd names, and agents that read first.

The base tree of a fresh workdir is empty, which hid a crash on any tree with
a folder. These tests build on the fixture project (packages four levels
deep, a non-ASCII name, an empty and a binary file, ignored files on disk)
and work an issue of it with the Claude provider against the fake Messages
API, whose model lists the tree and reads files before it writes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from blocks.team import AgentTeam, Role
from flows.build_app import build_app
from flows.process_issues import process_issues
from tasks.agents.scripted import files_read, first_look, listing_of
from tasks.agents.tools import AgentView, call_tool
from tasks.build.offline_script import REQUESTS_PER_AGENT, build_reply
from tasks.common.git import list_tree, open_repo, tree_of
from tasks.testing.github_api import FakeGitHub
from tasks.testing.messages_api import FakeMessagesAPI, role_of, step_of
from tasks.testing.repos import (
    BINARY,
    BINARY_FILE,
    DEEP_FILE,
    EMPTY_FILE,
    IGNORED_FILES,
    NON_ASCII_FILE,
    PROJECT,
    git,
    init_repo,
    tracked,
)

KEY = "sk-ant-api03-EXISTINGREPO-0123456789abcdefghijklmnop"
TOKEN = "ghp_EXISTINGREPO0123456789abcdefABCDEF01"


def small_team(name: str) -> str:
    roles = [
        Role(id="PM", title="PM", phase="planning", track="p", instructions="Plan the change."),
        Role(
            id="DEV",
            title="Developer",
            phase="implementation",
            track="i",
            depends_on=["PM"],
            instructions="Change the code the plan asks for; read what you change first.",
        ),
        Role(
            id="REVIEWER",
            title="Reviewer",
            phase="quality",
            track="q",
            depends_on=["DEV"],
            instructions="Review the change.",
        ),
    ]
    AgentTeam(roles=roles).save(name)
    return name


async def test_the_view_of_a_nested_tree_lists_and_reads_every_kind_of_file(tmp_path: Path) -> None:
    workdir = init_repo(tmp_path / "project")
    repo = open_repo(workdir)
    base = tree_of(repo, repo.head.commit.hexsha)
    repo.close()

    assert set(list_tree(workdir, base)) == set(PROJECT) == tracked(workdir)
    view = AgentView(workdir=workdir, base_tree=base, brief={"idea": "x"}, upstream=[])
    listed = str(await call_tool(view, "list_files", {})).splitlines()
    assert DEEP_FILE in listed and NON_ASCII_FILE in listed and EMPTY_FILE in listed
    assert not set(IGNORED_FILES) & set(listed)  # ignored files are not part of the tree
    assert await call_tool(view, "read_file", {"path": DEEP_FILE}) == PROJECT[DEEP_FILE]
    assert await call_tool(view, "read_file", {"path": NON_ASCII_FILE}) == PROJECT[NON_ASCII_FILE]
    assert await call_tool(view, "read_file", {"path": EMPTY_FILE}) == ""
    binary = str(await call_tool(view, "read_file", {"path": BINARY_FILE}))
    assert f"binary file of {len(BINARY)} bytes" in binary
    assert await call_tool(view, "list_files", {"prefix": "reports/formats/"}) == "\n".join(
        sorted(p for p in PROJECT if p.startswith("reports/formats/"))
    )


def test_build_app_on_an_existing_repository_reads_nested_files_and_keeps_the_tree(
    tmp_path: Path, unique_idea: str
) -> None:
    workdir = init_repo(tmp_path / "project")
    before = git(workdir, "rev-parse", "HEAD")

    result = build_app(
        idea=unique_idea, workdir=str(workdir), team=small_team(f"ex-{uuid.uuid4().hex[:8]}")
    )

    assert result.status == "completed" and len(result.commits) == 3
    assert result.metrics.model_requests == 3 * REQUESTS_PER_AGENT
    assert git(workdir, "rev-list", "--count", f"{before}..HEAD") == "3"
    assert set(PROJECT) <= tracked(workdir)  # the existing tree is kept, untouched
    assert git(workdir, "diff", "--stat", before, "HEAD", "--", *PROJECT) == ""
    assert all((workdir / path).exists() for path in IGNORED_FILES)  # never committed
    assert not set(IGNORED_FILES) & tracked(workdir)
    pm_doc = (workdir / "docs" / "pm.md").read_text()
    assert f"`{DEEP_FILE}`" in pm_doc  # it read the deepest files of the existing tree
    assert git(workdir, "status", "--porcelain") == ""


def claude_like(body: dict[str, Any]) -> dict[str, Any]:
    """DEV behaves as Claude does on an existing project: read what it changes, then edit it.

    It writes `to_csv` into the export module it read (the file's content as
    read, plus the new function) and a test into the test file it read.
    """
    if role_of(body) != "DEV":
        return build_reply(body)
    messages = body["messages"]
    step = step_of(body)
    reply = build_reply(body)  # for its envelope (id, usage, model)

    def calls(*uses: tuple[str, dict[str, Any]]) -> dict[str, Any]:
        reply["content"] = [{"type": "text", "text": f"DEV step {step}"}] + [
            {"type": "tool_use", "id": f"toolu_dev_{step}_{i}", "name": n, "input": a}
            for i, (n, a) in enumerate(uses)
        ]
        reply["stop_reason"] = "tool_use"
        return reply

    if step == 0:
        return calls(*first_look(["PM"]))
    if step == 1:
        wanted = ["reports/export.py", "reports/pages.py", "tests/test_reports.py"]
        assert set(wanted) <= set(listing_of(messages))
        return calls(*(("read_file", {"path": p}) for p in wanted))
    if step == 2:
        read = files_read(messages)
        export = read["reports/export.py"].replace(
            "import json", "import csv\nimport io\nimport json"
        )
        export += (
            "\n\ndef to_csv(rows: list[Row]) -> str:\n"
            '    """The page as CSV with a header row."""\n'
            "    out = io.StringIO()\n"
            '    writer = csv.writer(out, lineterminator="\\n")\n'
            '    writer.writerow(["name", "amount"])\n'
            "    writer.writerows(page(rows))\n"
            "    return out.getvalue()\n"
        )
        tests = read["tests/test_reports.py"].replace(
            "from reports.export import to_json", "from reports.export import to_csv, to_json"
        )
        tests += (
            "\n\ndef test_csv_export() -> None:\n"
            '    assert to_csv([("a", 1), ("b", 2)]) == "name,amount\\nb,2\\na,1\\n"\n'
        )
        return calls(
            ("write_file", {"path": "reports/export.py", "content": export}),
            ("write_file", {"path": "tests/test_reports.py", "content": tests}),
        )
    submit = {"summary": "DEV: added CSV export to the reports page.", "decisions": []}
    return calls(("submit", submit))


def test_an_idea_on_an_existing_project_edits_the_files_the_agent_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir = init_repo(tmp_path / "project")
    before = git(workdir, "rev-parse", "HEAD")
    with FakeMessagesAPI(script=claude_like) as api:
        monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.base_url)
        result = build_app(
            idea=f"Add CSV export to the reports page ({uuid.uuid4().hex})",
            workdir=str(workdir),
            team=small_team(f"csv-{uuid.uuid4().hex[:8]}"),
        )
    assert result.status == "completed" and result.provider == "anthropic"

    # Every file DEV wrote that existed before, it had read first, in the same run.
    dev = [r.body for r in api.requests if r.role == "DEV"]
    last = dev[-1]["messages"]
    read_paths = set(files_read(last))
    written = [
        block["input"]["path"]
        for message in last
        if message["role"] == "assistant"
        for block in message["content"]
        if block.get("type") == "tool_use" and block["name"] == "write_file"
    ]
    assert written == ["reports/export.py", "tests/test_reports.py"]
    assert set(written) <= read_paths & set(PROJECT)

    export = git(workdir, "show", "HEAD:reports/export.py")
    assert "def to_json" in export and "def to_csv" in export  # an edit, not a rewrite
    changed = git(workdir, "diff", "--name-only", before, "HEAD", "--", *PROJECT).splitlines()
    assert sorted(changed) == ["reports/export.py", "tests/test_reports.py"]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=workdir,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("PYTEST")},
    )
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "5 passed" in proc.stdout


def make_remote(base: Path) -> Path:
    seed = init_repo(base / "seed")
    bare = base / "remote.git"
    git(base, "clone", "-q", "--bare", str(seed), str(bare))
    return bare


def test_process_issues_on_claude_works_a_nested_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every issue of any real repository failed at ISSUE_TRIAGE: its model lists files first."""
    remote = make_remote(tmp_path)
    repo = "acme/reports"
    with FakeGitHub(TOKEN) as github, FakeMessagesAPI() as api:
        github.add_repo(repo, str(remote))
        number = github.add_issue(repo, "Add a CSV export", "Export the page.", ["agent:ready"])
        monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
        monkeypatch.setenv("GITHUB_API_URL", github.api_url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.base_url)
        summary = process_issues(
            repo=repo, provider="anthropic", clone_dir=str(tmp_path / "work"), concurrency=1
        )
        [result] = summary.issues
        assert summary.provider == "anthropic"
        assert result.status == "opened", result.error
        assert result.number == number and result.agents >= 4

    triage = [r.body for r in api.requests if r.role == "ISSUE_TRIAGE"]
    listing = listing_of(triage[-1]["messages"])
    assert DEEP_FILE in listing and NON_ASCII_FILE in listing
    read = files_read(triage[-1]["messages"])
    assert any(path.count("/") >= 4 for path in read)  # nested files were read
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in api.requests)
    files = git(remote, "ls-tree", "-r", "--name-only", "agentmill/issue-1").splitlines()
    assert DEEP_FILE in files and f"agentmill_offline/issue_{number}_1.py" in files
    body = json.dumps(next(iter(github.repos[repo].pulls.values())))
    assert "| pytest | passed |" in body
