"""build_app on a git remote: clone into scratch, push each phase, rerun anywhere.

The remote is a bare repository on disk holding a small project; each run
clones it into its own scratch directory (as a worker of a fleet would), and
the rerun, from another scratch directory with no manifest, starts from the
base the remote records and so is all cache hits.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from benchmarks.teams import generated_team
from flows.build_app import build_app
from tasks.common.parameters import InvalidParameters
from tasks.common.remote import GitError
from tasks.testing.messages_api import FakeMessagesAPI
from tasks.testing.repos import git


def _bare_remote_with_a_project(tmp_path: Path) -> tuple[Path, str]:
    seed = tmp_path / "seed"
    seed.mkdir()
    git(seed, "init", "-q", "-b", "main")
    (seed / "README.md").write_text("# reports\n")
    (seed / "src").mkdir()
    (seed / "src" / "app.py").write_text("print('hi')\n")
    git(seed, "add", "-A")
    git(seed, "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "start")
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(seed), str(bare)], check=True)
    return bare, git(seed, "rev-parse", "HEAD").strip()


def _remote(bare: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(bare), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def test_phases_are_pushed_as_they_land_and_a_rerun_elsewhere_is_all_cache_hits(
    api: FakeMessagesAPI, tmp_path: Path, unique_idea: str
) -> None:
    bare, start = _bare_remote_with_a_project(tmp_path)
    team = generated_team(5)  # one role per phase: five phase pushes at a fraction of the cost
    team.verify = False
    team.save("remote-five", overwrite=True)
    params = {"idea": unique_idea, "repo_url": str(bare), "branch": "agentmill/todo",
              "provider": "anthropic", "team": "remote-five"}  # fmt: skip

    first = build_app(**params, scratch_dir=str(tmp_path / "worker-a"))
    shas = _remote(bare, "rev-list", "--reverse", "refs/heads/agentmill/todo").split()
    assert shas[0] == start and shas[1:] == [c.sha for c in first.commits]  # one push per phase
    assert len(first.commits) == 5
    assert _remote(bare, "rev-parse", "refs/agentmill/base/agentmill/todo") == start
    assert _remote(bare, "rev-parse", "refs/heads/main") == start  # the default branch untouched
    assert not any((tmp_path / "worker-a").iterdir())  # the clone is gone
    asked = len(api.requests)

    again = build_app(**params, scratch_dir=str(tmp_path / "worker-b"))
    assert len(api.requests) == asked  # the same base, so every agent is a cache hit
    assert again.metrics.cached_agents == len(again.agents) and again.commits == []
    assert _remote(bare, "rev-parse", "refs/heads/agentmill/todo") == shas[-1]
    assert not any((tmp_path / "worker-b").iterdir())


def test_a_remote_url_with_credentials_in_it_is_refused(tmp_path: Path, unique_idea: str) -> None:
    with pytest.raises(InvalidParameters, match="carries credentials") as refused:
        build_app(
            idea=unique_idea,
            repo_url="https://x-access-token:ghp_secret@github.com/o/r.git",
            scratch_dir=str(tmp_path),
            provider="offline",
        )
    assert "ghp_secret" not in str(refused.value)
    assert not any(tmp_path.iterdir())


def test_a_remote_that_is_not_there_fails_before_a_clone(tmp_path: Path, unique_idea: str) -> None:
    with pytest.raises(GitError, match=r"cannot be reached \(no git repository at that path"):
        build_app(
            idea=unique_idea,
            repo_url=str(tmp_path / "no-such.git"),
            scratch_dir=str(tmp_path / "scratch"),
            provider="offline",
        )
    assert not (tmp_path / "scratch").exists()  # no clone was started
