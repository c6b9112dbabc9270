"""One clone of the target repository, one git worktree per issue, and authenticated pushes.

Git runs as a subprocess (asyncio), so clones, commits and pushes of several
issues overlap. The token reaches git only through the environment of the
git commands that talk to the remote (`GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_0`/
`GIT_CONFIG_VALUE_0`, an `http.<origin>/.extraHeader` scoped to the clone
URL's host): never in the remote URL, `.git/config`, an argument list (which
`ps` shows) or a log line, and git's own error text is redacted before it is
raised.

Branches are pushed to `origin`, or to a fork (`push_to`): the pull request
then comes from the fork, so agent-written code never lands as a branch of
the base repository, where CI runs with its secrets.

Layout under the clone directory, kept between runs (a fetch, not a clone)::

    <clone-dir>/<owner>/<name>/                      the clone (origin = repo_url or the API's)
    <clone-dir>/<owner>/<name>.worktrees/issue-<N>/  one worktree per issue, on agentmill/issue-<N>

With a scratch directory (a fleet worker), the same layout lives in a fresh
directory of the run's own, `<scratch-dir>/agentmill-issues-XXXX/<name>`,
removed when the run ends however it ends: what a later run needs is on the
remote (the issue branches) and on GitHub (the pull requests).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tasks.common.logs import run_logger
from tasks.common.remote import (
    GitAuth,
    GitError,
    clone_into_scratch,
    clone_no_checkout,
    git,
    refuse_credentials_in,
)
from tasks.common.workspace import workspace_lock

__all__ = ["Clone", "GitAuth", "GitError", "branch_for", "git", "open_clone", "run_clone"]

BRANCH_PREFIX = "agentmill/issue-"


def branch_for(issue: int) -> str:
    return f"{BRANCH_PREFIX}{issue}"


PUSH_REMOTE = "push"  # the fork's remote, when branches go to a fork


@dataclass
class Clone:
    """The run's clone; worktree additions and fetches on it take turns (one lock)."""

    path: Path
    auth: GitAuth
    # What issue branches start from and pull requests target: the `branch` parameter, else
    # the repository's default branch.
    default_branch: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    push_remote: str = "origin"  # where branches go: origin, or a fork (`use_fork`)
    push_auth: GitAuth | None = None

    async def use_fork(self, clone_url: str, auth: GitAuth) -> None:
        """Push branches to the fork at `clone_url` (its remote added, or updated, and fetched)."""
        refuse_credentials_in(clone_url)
        code, _ = await git("remote", "get-url", PUSH_REMOTE, cwd=self.path, check=False)
        verb = "set-url" if code == 0 else "add"
        await git("remote", verb, PUSH_REMOTE, clone_url, cwd=self.path)
        await git("fetch", "--prune", "--quiet", PUSH_REMOTE, cwd=self.path, auth=auth)
        self.push_remote, self.push_auth = PUSH_REMOTE, auth

    async def require_base(self, url: str) -> None:
        """The base branch is on the remote (as of the clone or fetch), or a GitError saying so."""
        ref = f"refs/remotes/origin/{self.default_branch}^{{commit}}"
        code, _ = await git("rev-parse", "--verify", "--quiet", ref, cwd=self.path, check=False)
        if code != 0:
            raise GitError(
                f"the remote {url} has no branch {self.default_branch!r}; pass an existing "
                "branch as `branch` (issue branches start from it, pull requests target it)"
            )

    @property
    def worktrees(self) -> Path:
        return self.path.with_name(self.path.name + ".worktrees")

    async def remote_sha(self, branch: str) -> str | None:
        """The commit of `<branch>` where branches are pushed, as of the last fetch, or None."""
        ref = f"refs/remotes/{self.push_remote}/{branch}^{{commit}}"
        code, out = await git(
            "rev-parse", "--verify", "--quiet", ref, cwd=self.path, check=False
        )  # fmt: skip
        return out.strip() if code == 0 and out.strip() else None

    async def add_worktree(self, issue: int, start: str) -> Path:
        """A fresh worktree on `agentmill/issue-<N>` at `start`; one a crash left is replaced."""
        path = self.worktrees / f"issue-{issue}"
        async with self.lock:
            if path.exists():
                await git("worktree", "remove", "--force", str(path), cwd=self.path, check=False)
                shutil.rmtree(path, ignore_errors=True)
            await git("worktree", "prune", cwd=self.path)
            await git(
                "worktree", "add", "--force", "-B", branch_for(issue), str(path), start,
                cwd=self.path,
            )  # fmt: skip
        return path

    async def remove_worktree(self, path: Path) -> None:
        async with self.lock:
            await git("worktree", "remove", "--force", str(path), cwd=self.path, check=False)
            shutil.rmtree(path, ignore_errors=True)
            await git("worktree", "prune", cwd=self.path, check=False)


@asynccontextmanager
async def run_clone(
    url: str,
    auth: GitAuth,
    base_branch: str,
    *,
    clone_path: Path,
    scratch_dir: Path | None,
    run_id: str,
) -> AsyncIterator[Clone]:
    """The run's clone: kept at `clone_path` between runs, or fresh under `scratch_dir`.

    At `clone_path` one run at a time holds it (the workspace lock); under a
    scratch directory it is this run's alone and removed at the end, success
    or failure. Either way the base branch must be on the remote.
    """
    if scratch_dir is None:
        with workspace_lock(clone_path.with_name(clone_path.name + ".worktrees"), run_id):
            clone = await open_clone(url, clone_path, auth, base_branch)
            await clone.require_base(url)
            yield clone
        return
    scratch = await clone_into_scratch(
        url, scratch_dir, auth, prefix="agentmill-issues-", name=clone_path.name
    )
    try:
        run_logger("agentmill.clone").info("cloned %s into %s", url, scratch.path)
        clone = Clone(path=scratch.path, auth=auth, default_branch=base_branch)
        await clone.require_base(url)
        yield clone
    finally:
        scratch.remove()


async def open_clone(clone_url: str, path: Path, auth: GitAuth, default_branch: str) -> Clone:
    """Clone `clone_url` into `path`, or fetch if it is already there (same remote only)."""
    refuse_credentials_in(clone_url)
    log = run_logger("agentmill.clone")
    if _is_clone(path):
        _, remote = await git("remote", "get-url", "origin", cwd=path)
        if remote.strip() != clone_url:
            raise GitError(
                f"{path} is a clone of {remote.strip()}, not {clone_url}; pass another "
                "clone_dir, or remove it"
            )
        await git("fetch", "--prune", "--quiet", "origin", cwd=path, auth=auth)
        log.info("fetched %s into %s", clone_url, path)
    else:
        _prepare_clone_target(path)
        await clone_no_checkout(clone_url, path, auth)
        log.info("cloned %s into %s", clone_url, path)
    return Clone(path=path, auth=auth, default_branch=default_branch)


def _is_clone(path: Path) -> bool:
    return (path / ".git").exists()


def _prepare_clone_target(path: Path) -> None:
    if path.exists() and any(path.iterdir()):
        raise GitError(f"{path} exists and is not a git clone; pass another clone_dir")


async def commit_all(worktree: Path, paths: list[str], message: str) -> str | None:
    """Commit exactly `paths` on top of HEAD, from an index of its own; None when unchanged.

    The commit's index is a temporary file (`GIT_INDEX_FILE`) read from HEAD
    plus these paths, so nothing else staged in the worktree rides along, and
    `update-index` (unlike `git add`) records each given path whatever ignore
    rules say: the change set was checked before it was written. HEAD moves
    only from the commit the index was read from; then the worktree's own
    index takes these paths.
    """
    if not paths:
        return None
    head = await head_of(worktree)
    with tempfile.TemporaryDirectory(prefix="agentmill-index-") as scratch:
        own = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        await git("read-tree", head, cwd=worktree, extra_env=own)
        listed = "".join(f"{path}\0" for path in paths)
        await git(
            "update-index", "--add", "-z", "--stdin", cwd=worktree, stdin=listed, extra_env=own
        )
        _, tree = await git("write-tree", cwd=worktree, extra_env=own)
    if tree.strip() == await tree_of_commit(worktree, head):
        return None
    _, sha = await git(
        "-c", "commit.gpgsign=false", "commit-tree", tree.strip(), "-p", head, "-F", "-",
        cwd=worktree, stdin=message,
    )  # fmt: skip
    sha = sha.strip()
    await git("update-ref", "-m", "agentmill: resolve", "HEAD", sha, head, cwd=worktree)
    await git("reset", "-q", "--", *paths, cwd=worktree)  # the worktree's index follows
    return sha


async def head_of(worktree: Path) -> str:
    _, sha = await git("rev-parse", "HEAD", cwd=worktree)
    return sha.strip()


async def tree_of_commit(worktree: Path, commit: str) -> str:
    _, tree = await git("rev-parse", f"{commit}^{{tree}}", cwd=worktree)
    return tree.strip()


async def push_branch(clone: Clone, worktree: Path, branch: str, expected: str | None) -> None:
    """Push HEAD to `branch` of the push remote, only if it still has `expected` (None: none).

    A lease, not a blind force: the branch is agentmill's own, but a push made
    by someone else since our fetch is never overwritten.
    """
    lease = f"--force-with-lease=refs/heads/{branch}:{expected or ''}"
    await git(
        "push", "--quiet", "--no-verify", lease, clone.push_remote, f"HEAD:refs/heads/{branch}",
        cwd=worktree, auth=clone.push_auth or clone.auth,
    )  # fmt: skip
