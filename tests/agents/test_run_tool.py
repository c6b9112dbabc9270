"""The agents' run tool: one command in the sandbox over exactly the agent's view."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tasks.agents.errors import ToolError
from tasks.agents.output import AgentOutput
from tasks.agents.tools import AgentView, Limits, call_tool
from tasks.common.git import open_repo, tree_of
from tasks.testing.repos import DEEP_FILE, init_repo

LIST = (
    "import os\n"
    "for root, dirs, files in os.walk('.'):\n"
    "    dirs[:] = [d for d in dirs if not d.startswith('.')]\n"
    "    for name in files:\n"
    "        print(os.path.relpath(os.path.join(root, name)))\n"
    "print('KEY' in ''.join(os.environ))\n"
)


@pytest.fixture
def view(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AgentView:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-api03-RUNTOOL-0123456789abcdefghijklmnop")
    workdir = init_repo(tmp_path / "project")
    repo = open_repo(workdir)
    base = tree_of(repo, repo.head.commit.hexsha)
    repo.close()
    upstream = AgentOutput(
        role="LEAD", summary="s", model="m", provider="offline", files={"plan/notes.md": "plan"}
    )
    return AgentView(
        workdir=workdir,
        base_tree=base,
        brief={},
        upstream=[upstream],
        limits=Limits(run_timeout_s=30, max_runs=3),
    )


async def test_run_sees_the_base_its_dependencies_and_its_own_writes_and_nothing_else(
    view: AgentView,
) -> None:
    await call_tool(view, "write_file", {"path": "mine/new.py", "content": "x = 1\n"})
    answer = str(await call_tool(view, "run", {"command": f'{sys.executable} -c "{LIST}"'}))
    first, _, listing = answer.partition("\n")
    assert first.startswith("exit code 0; passed") and "no network" in first
    files = set(listing.split())
    assert {DEEP_FILE, "plan/notes.md", "mine/new.py", "tests/test_reports.py"} <= files
    assert "debug.log" not in files and not any(f.startswith(".git/") for f in files)
    assert listing.strip().endswith("False")  # no KEY variable of ours inside
    tests = str(
        await call_tool(view, "run", {"command": "python -m pytest -q -p no:cacheprovider"})
    )
    assert tests.startswith("exit code 0") and "4 passed" in tests  # the project's own tests


async def test_run_is_bounded_and_refuses_what_it_cannot_run(view: AgentView) -> None:
    with pytest.raises(ToolError, match="does not parse"):
        await call_tool(view, "run", {"command": "echo 'unclosed"})
    with pytest.raises(ToolError, match="empty"):
        await call_tool(view, "run", {"command": "   "})
    failed = str(await call_tool(view, "run", {"command": "python -c 'raise SystemExit(3)'"}))
    assert failed.startswith("exit code 3; failed")
    await call_tool(view, "run", {"command": "true"})
    await call_tool(view, "run", {"command": "true"})
    with pytest.raises(ToolError, match="at most 3 commands"):
        await call_tool(view, "run", {"command": "true"})
