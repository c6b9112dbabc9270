"""The issue's commit: built from an index of its own, so nothing else staged rides along."""

from __future__ import annotations

from pathlib import Path

from tasks.issues.clone import commit_all
from tasks.testing.repos import git, init_repo


async def test_commit_all_commits_exactly_its_paths(tmp_path: Path) -> None:
    """On main, `git add` + `git commit` took everything staged in the worktree."""
    work = init_repo(tmp_path / "work")
    (work / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    (work / "stray.txt").write_text("staged by someone else\n")
    git(work, "add", "stray.txt")

    sha = await commit_all(work, ["calc.py"], "agentmill: resolve #1\n\nAgentmill-Issue: x#1\n")

    assert sha == git(work, "rev-parse", "HEAD")
    assert git(work, "show", "--name-only", "--format=", sha) == "calc.py"
    assert git(work, "log", "-1", "--format=%an %B", sha).startswith(
        "agentmill agentmill: resolve #1"
    )
    assert git(work, "status", "--porcelain") == "A  stray.txt"  # still staged, not committed
    assert await commit_all(work, ["calc.py"], "again") is None  # unchanged: no commit
