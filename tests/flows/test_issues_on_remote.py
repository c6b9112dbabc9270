"""process_issues on a fleet: the branches live on a git remote, each run's clone in scratch.

The remote is a bare repository in tmp_path with a `develop` branch ahead of
`main` (issue-3 pushes refused by a hook); the fake GitHub's record points
its clone URL at a host that does not exist, so only `repo_url` can reach the
code. Worker A runs in this process; worker B is another process with its own
PREFECT_HOME, working directory and scratch directory, against the same
Prefect server and the same result storage (the fleet's shared cache).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prefect.settings import get_current_settings

from flows.build_app import BuildRequest
from flows.process_issues import IssuesRequest, process_issues
from tasks.cli.issues import add_options
from tasks.common.parameters import InvalidParameters, checked_arguments, validate
from tasks.common.remote import GitAuth, GitError, clone_into_scratch
from tasks.issues.report import IssuesSummary
from tasks.testing.github_api import FakeGitHub
from tasks.testing.repos import git
from tests.flows.test_process_issues import REPO, TOKEN, make_remote

NOWHERE = "https://git.invalid/acme/widgets.git"  # the API's clone URL: never reachable


@dataclass
class Remote:
    fake: FakeGitHub
    bare: Path
    develop: str  # develop's head, what every issue branch starts from
    base: Path
    first: IssuesSummary


def _with_develop(bare: Path, work: Path) -> str:
    """A `develop` branch one commit ahead of main, pushed to the bare remote."""
    git(work.parent, "clone", "-q", str(bare), str(work))
    git(work, "checkout", "-q", "-b", "develop")
    (work / "NOTES.md").write_text("Work in progress lands on develop first.\n")
    git(work, "add", "NOTES.md")
    git(work, "commit", "-qm", "develop starts")
    git(work, "push", "-q", "origin", "develop")
    return git(work, "rev-parse", "HEAD")


def _github_env(fake: FakeGitHub) -> dict[str, str]:
    return {"GITHUB_TOKEN": TOKEN, "GITHUB_API_URL": fake.api_url}


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remote]:
    base = tmp_path_factory.mktemp("issues-remote")
    bare = make_remote(base)
    develop = _with_develop(bare, base / "dev")
    nonce = time.time_ns()  # issue texts no other test uses: the cache starts cold
    with FakeGitHub(TOKEN, page_size=2) as fake, pytest.MonkeyPatch.context() as env:
        fake.add_repo(REPO, NOWHERE)
        for title in ("Add a greeting helper", "Add a farewell helper", "Fix the broken division"):
            fake.add_issue(REPO, title, f"Please do it ({nonce}).", ["agent:ready"])
        for name, value in _github_env(fake).items():
            env.setenv(name, value)
        first = process_issues(
            repo=REPO, repo_url=str(bare), branch="develop", scratch_dir=str(base / "worker-a")
        )
        yield Remote(fake, bare, develop, base, first)


def _on_remote(bare: Path, *args: str) -> str:
    return git(bare, *args)


def test_worker_a_branches_start_from_branch_and_pull_requests_target_it(remote: Remote) -> None:
    assert [(i.number, i.status) for i in remote.first.issues] == [
        (1, "opened"),
        (2, "opened"),
        (3, "failed"),  # the remote's hook refused its push
    ]
    assert "issue-3 may not be pushed" in (remote.first.issues[2].error or "")
    for number in (1, 2):
        sha = _on_remote(remote.bare, "rev-parse", f"agentmill/issue-{number}")
        assert _on_remote(remote.bare, "rev-parse", f"{sha}^") == remote.develop
    pulls = remote.fake.repos[REPO].pulls.values()
    assert sorted((p["head"]["ref"], p["base"]["ref"]) for p in pulls) == [
        ("agentmill/issue-1", "develop"),
        ("agentmill/issue-2", "develop"),
    ]
    assert not any((remote.base / "worker-a").iterdir())  # the run's clone is gone


def test_worker_b_continues_from_the_remote_and_the_shared_cache(
    remote: Remote, tmp_path: Path
) -> None:
    """Another process, PREFECT_HOME, cwd and scratch dir; the same server and result storage."""
    fake = remote.fake
    branches = _on_remote(remote.bare, "rev-parse", "agentmill/issue-1", "agentmill/issue-2")
    pulls = len(fake.repos[REPO].pulls)
    storage = get_current_settings().results.local_storage_path
    (tmp_path / "cwd").mkdir()
    call = (
        "import sys; from flows.process_issues import process_issues; "
        f"s = process_issues(repo={REPO!r}, repo_url={str(remote.bare)!r}, branch='develop', "
        f"scratch_dir={str(tmp_path / 'worker-b')!r}, existing_pr='update'); "
        "sys.stdout.write('\\nSUMMARY ' + s.model_dump_json())"
    )
    env = {
        **os.environ,
        **_github_env(fake),
        "PREFECT_HOME": str(tmp_path / "home-b"),
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(storage),  # stands in for shared storage
    }
    done = subprocess.run(
        [sys.executable, "-c", call],
        cwd=tmp_path / "cwd",
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    second = IssuesSummary(**json.loads(done.stdout.rsplit("SUMMARY ", 1)[1]))

    statuses = [(i.number, i.status) for i in second.issues]
    assert statuses == [(1, "updated"), (2, "updated"), (3, "failed")]
    # It worked on the branches the remote holds: nothing redone from develop, no PR more.
    assert _on_remote(remote.bare, "rev-parse", "agentmill/issue-1", "agentmill/issue-2") == (
        branches
    )
    assert len(fake.repos[REPO].pulls) == pulls
    assert sorted(fake.patches) == sorted(fake.repos[REPO].pulls)  # updated in place
    # Issue 3 had nothing on the remote, so it started again: every agent from the cache.
    assert second.issues[2].cached_agents == second.issues[2].agents > 0
    assert not (tmp_path / "worker-b").exists() or not any((tmp_path / "worker-b").iterdir())
    assert not any((tmp_path / "cwd").iterdir())  # nothing left in the worker's own directory


def test_a_run_that_fails_after_cloning_leaves_its_scratch_dir_empty(
    remote: Remote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in _github_env(remote.fake).items():
        monkeypatch.setenv(name, value)
    with pytest.raises(GitError, match="has no branch 'release'; pass an existing branch"):
        process_issues(
            repo=REPO, repo_url=str(remote.bare), branch="release", scratch_dir=str(tmp_path)
        )
    assert not any(tmp_path.iterdir())


def test_a_repo_url_with_credentials_is_refused_before_the_run(
    remote: Remote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_API_URL", remote.fake.api_url)
    asked = len(remote.fake.requests)
    secret = "ghp_INURL0123456789abcdefABCDEF0123456789"
    with pytest.raises(InvalidParameters, match="repo_url: the remote URL carries credentials"):
        process_issues(
            repo=REPO,
            repo_url=f"https://x-access-token:{secret}@github.com/acme/widgets.git",
            scratch_dir=str(tmp_path / "scratch"),
        )
    assert len(remote.fake.requests) == asked  # refused before any request
    assert not (tmp_path / "scratch").exists()


def test_a_repo_url_that_is_not_there_fails_before_any_clone_or_listing(
    remote: Remote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in _github_env(remote.fake).items():
        monkeypatch.setenv(name, value)
    listed = len(remote.fake.seen("GET", "/issues"))
    with pytest.raises(GitError, match=r"cannot be reached \(no git repository at that path"):
        process_issues(
            repo=REPO, repo_url=str(tmp_path / "gone.git"), scratch_dir=str(tmp_path / "s")
        )
    assert len(remote.fake.seen("GET", "/issues")) == listed
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    ("option", "value", "problem"),
    [
        ("--repo-url", "git@github.com:acme/widgets.git", "is an ssh remote"),
        ("--repo-url", "http://github.com/acme/widgets.git", "http only on loopback"),
        ("--branch", "feature branch", "is not a branch name git accepts"),
        ("--branch", "-delete", "is not a branch name git accepts"),
    ],
)
def test_the_command_line_checks_the_remote_options_like_the_flow(
    option: str, value: str, problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="agentmill issues")
    add_options(parser)
    good = parser.parse_args(
        ["--repo", REPO, "--repo-url", "/srv/git/widgets.git", "--branch", "develop",
         "--scratch-dir", "/scratch"]
    )  # fmt: skip
    params = checked_arguments(parser, IssuesRequest, good)
    assert (params["repo_url"], params["branch"], params["scratch_dir"]) == (
        "/srv/git/widgets.git",
        "develop",
        "/scratch",
    )
    bad = parser.parse_args(["--repo", REPO, f"{option}={value}"])
    with pytest.raises(SystemExit) as usage:
        checked_arguments(parser, IssuesRequest, bad)
    assert usage.value.code == 2 and problem in capsys.readouterr().err


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://me:ghp_x@github.com/o/r.git", "carries credentials"),
        ("https://gitlab.com/o/r.git?private_token=glpat-x", "carries credentials"),
        ("https://github.com/o/r.git#access_token=ghp_x", "carries credentials"),
        ("git@github.com:o/r.git", "is an ssh remote"),
        ("ssh://github.com/o/r.git", "not a remote agentmill pushes to"),
        ("http://github.com/o/r.git", "http only on loopback"),
        ("  ", "is empty"),
    ],
)
def test_both_flows_refuse_the_same_remotes(url: str, problem: str) -> None:
    for model, required in ((BuildRequest, {"idea": "an app"}), (IssuesRequest, {"repo": REPO})):
        with pytest.raises(InvalidParameters, match=f"repo_url: .*{problem}"):
            validate(model, {**required, "repo_url": url})


async def test_a_relative_repo_url_is_a_path_on_the_worker(
    remote: Remote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(remote.base)  # git clones from the scratch dir: relative would miss
    scratch = await clone_into_scratch(
        "remote.git", tmp_path / "s", GitAuth("remote.git"), prefix="t-", name="widgets"
    )
    assert scratch.url == str(remote.bare)
    assert git(scratch.path, "rev-parse", "origin/develop") == remote.develop
    assert scratch.path.parent == scratch.root
    scratch.remove()
    assert not any((tmp_path / "s").iterdir())
