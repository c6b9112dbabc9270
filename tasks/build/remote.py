"""Builds that live on a git remote: clone into scratch, push each phase as it lands.

A worker runs a flow in its own directory, so for a fleet the build's home
is a remote (a bare repository path, or an https URL whose token comes from
GITHUB_TOKEN or a GitHubCredentials block, sent as a header by
tasks.common.remote). A run clones it into a fresh directory under the
scratch directory, builds there, and pushes each phase commit to the branch
as it lands: one atomic push per phase, with a lease so that a push someone
else made meanwhile is refused rather than overwritten.

The base the first run started from is what every agent's cache key hangs
on, and on one machine it lives in `.tasks/manifest.json`, which is not
committed. On a remote it lives in a ref of its own,
`refs/agentmill/base/<branch>`, pushed atomically with the first phase: a
rerun on any worker clones, reads that ref, and starts from the same base,
so the shared result storage answers every agent. The clone is removed at the
end: nothing a later run needs stays in the scratch directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from tasks.common.git import EMPTY_TREE
from tasks.common.remote import GitAuth, GitError, ScratchClone, clone_into_scratch, git

BASE_REF_PREFIX = "refs/agentmill/base/"


@dataclass
class RemoteBuild:
    """One run's clone of the remote and what its pushes must agree with."""

    scratch: ScratchClone  # the clone, the build's workdir
    branch: str
    auth: GitAuth
    remote_head: str | None  # the branch on the remote as this run last saw it (None: absent)
    # The recorded base: a commit, or the empty tree's id for a build that started from
    # nothing (a ref may name a tree); None when this run is the first and records it.
    base: str | None

    @property
    def path(self) -> Path:
        return self.scratch.path

    @property
    def base_ref(self) -> str:
        return f"{BASE_REF_PREFIX}{self.branch}"

    async def push_phase(self, sha: str, base: str) -> None:
        """Push one phase commit to the branch (and, with the first, the base ref), atomically.

        `base` is the base commit, or the base tree when there is no commit.
        """
        refspecs = [f"{sha}:refs/heads/{self.branch}"]
        leases = [f"--force-with-lease=refs/heads/{self.branch}:{self.remote_head or ''}"]
        if self.base is None:
            if base == EMPTY_TREE:  # git knows the empty tree's id, but may not hold it
                await git("hash-object", "-t", "tree", "-w", "--stdin", cwd=self.path, stdin="")
            refspecs.append(f"{base}:{self.base_ref}")
            leases.append(f"--force-with-lease={self.base_ref}:")
        await git(
            "push", "--quiet", "--no-verify", "--atomic", *leases, "origin", *refspecs,
            cwd=self.path, auth=self.auth,
        )  # fmt: skip
        self.remote_head = sha
        self.base = self.base or base

    async def recorded_base(self) -> tuple[str | None, str] | None:
        """(base commit, base tree) as the remote records them, or None for a first run."""
        if self.base is None:
            return None
        _, kind = await git("cat-file", "-t", self.base, cwd=self.path)
        if kind.strip() == "tree":
            return None, self.base
        _, tree = await git("rev-parse", f"{self.base}^{{tree}}", cwd=self.path)
        return self.base, tree.strip()

    def remove(self) -> None:
        self.scratch.remove()


async def clone_for_build(
    url: str, branch: str, scratch_dir: Path | None, auth: GitAuth
) -> RemoteBuild:
    """Clone `url` into a fresh directory under `scratch_dir` and check out `branch`.

    The branch continues where the remote had it when cloned (what the first
    push's lease expects); a new branch starts from the remote's default
    branch (or empty, on an empty remote). The recorded base, if any, is
    fetched too. `branch` was checked with the parameters (BranchName).
    """
    scratch = await clone_into_scratch(url, scratch_dir, auth, prefix="agentmill-build-")
    path = scratch.path
    try:
        code, out = await git("rev-parse", "--verify", "--quiet",
                              f"refs/remotes/origin/{branch}^{{commit}}", cwd=path,
                              check=False)  # fmt: skip
        remote_head = out.strip() if code == 0 and out.strip() else None
        if remote_head is not None:
            await git("checkout", "--quiet", "-B", branch, remote_head, cwd=path)
        elif await _has_commits(path):
            await git("checkout", "--quiet", "-B", branch, "origin/HEAD", cwd=path)
        else:
            await git("checkout", "--quiet", "--orphan", branch, cwd=path)
        base = None
        ref = f"{BASE_REF_PREFIX}{branch}"
        code, _ = await git("fetch", "--quiet", "origin", f"{ref}:{ref}", cwd=path, auth=auth,
                            check=False)  # fmt: skip
        if code == 0:
            _, out = await git("rev-parse", ref, cwd=path)
            base = out.strip()
    except BaseException:
        scratch.remove()
        raise
    return RemoteBuild(scratch, branch, auth, remote_head, base)


async def _has_commits(path: Path) -> bool:
    code, _ = await git("rev-parse", "--verify", "--quiet", "origin/HEAD", cwd=path, check=False)
    return code == 0


async def git_token(credentials_block: str | None) -> SecretStr | None:
    """The token for an https remote: the named GitHubCredentials block, else GITHUB_TOKEN.

    None is fine for a path or a remote that needs no token; the header is only
    ever sent to an http(s) remote's own host.
    """
    if credentials_block:
        from blocks.credentials import GitHubCredentials

        try:
            loaded: object = await GitHubCredentials.aload(credentials_block)
        except ValueError as exc:
            raise GitError(
                f"no GitHubCredentials block named {credentials_block!r}; create it with "
                f"GitHubCredentials(token=...).save({credentials_block!r})"
            ) from exc
        assert isinstance(loaded, GitHubCredentials)
        return loaded.token
    from_env = os.environ.get("GITHUB_TOKEN", "")
    return SecretStr(from_env) if from_env else None
