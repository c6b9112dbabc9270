"""Git for the workdir (GitPython): the base tree agents read, and one commit per phase.

Agents read the base tree from git objects, not from the working tree, so what
they see cannot change while earlier phases commit around them.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import git

from tasks.common.errors import AgentmillError

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
AGENTMILL = git.Actor("agentmill", "agentmill@users.noreply.localhost")

# Run state that must never be committed: it changes on every run (times,
# session ids), so committing it would turn a fully cached rerun into a commit.
_EXCLUDES = (
    "/.tasks/manifest.json",
    "/.tasks/report.*",
    "/.tasks/lock",
    "/.tasks/pending-phase.json",
    "/.tasks/.*.tmp",
)


class RepoStateError(AgentmillError, ValueError):
    """The repository is in a state agentmill must not build on; the message says why."""


def refuse_unsafe_state(repo: git.Repo) -> None:
    """Never build over the user's uncommitted work, and never commit onto a detached HEAD."""
    if repo.head.is_detached:
        raise RepoStateError(
            f"{repo.working_tree_dir} is on a detached HEAD; check out a branch first "
            "(e.g. git switch -c agentmill) so phase commits land on it"
        )
    dirty = set(repo.untracked_files)
    dirty.update(str(d.a_path) for d in repo.index.diff(None))
    if head_commit(repo):
        dirty.update(str(d.a_path) for d in repo.index.diff("HEAD"))
    else:
        dirty.update(str(path) for path, _stage in repo.index.entries)
    if dirty:
        shown = ", ".join(sorted(dirty)[:5]) + (" ..." if len(dirty) > 5 else "")
        raise RepoStateError(
            f"{repo.working_tree_dir} has uncommitted changes ({shown}); agentmill never "
            "overwrites your work: commit or stash them, or use another workdir"
        )


def restore_paths(workdir: Path, paths: list[str]) -> None:
    """Put paths back as HEAD has them; delete those HEAD does not have."""
    if not paths:
        return
    repo = git.Repo(workdir)
    try:
        head = head_commit(repo)
        # -z: paths raw, not C-quoted (a non-ASCII name would not match otherwise)
        listed = repo.git.ls_tree("-r", "-z", "--name-only", head) if head else ""
        tracked = {path for path in listed.split("\0") if path}
        if head:
            repo.git.reset("-q", head, "--", *paths)  # unstage whatever the killed run added
        else:
            repo.git.rm("--cached", "-q", "--ignore-unmatch", "--", *paths)
        for path in paths:
            if path in tracked:
                repo.git.checkout(head, "--", path)
            else:
                (workdir / path).unlink(missing_ok=True)
    finally:
        repo.close()


def _repo(workdir: Path) -> git.Repo:
    """Open with the pure-Python object database (GitDB).

    GitPython's default (GitCmdObjectDB) writes each blob through a `git`
    subprocess: three per agent at a phase commit, about 2.5 ms each on two
    cores, and the fork of a large process stalls the build's event loop.
    GitDB writes loose objects in-process and reads packs as well.
    """
    return git.Repo(workdir, odbt=git.GitDB)


def open_repo(workdir: Path) -> git.Repo:
    """The workdir's repository, created (with the run-state excludes) if need be."""
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        repo = _repo(workdir)
    except git.InvalidGitRepositoryError:
        repo = git.Repo.init(workdir, initial_branch="main", odbt=git.GitDB)
    exclude = Path(repo.git_dir) / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    present = exclude.read_text().splitlines() if exclude.exists() else []
    missing = [line for line in _EXCLUDES if line not in present]
    if missing:
        with exclude.open("a") as handle:
            handle.write("".join(f"{line}\n" for line in missing))
    return repo


def head_commit(repo: git.Repo) -> str | None:
    try:
        return repo.head.commit.hexsha
    except ValueError:  # no commits yet
        return None


def tree_of(repo: git.Repo, commit: str | None) -> str:
    return EMPTY_TREE if commit is None else repo.commit(commit).tree.hexsha


@dataclass(frozen=True)
class TreeEntry:
    blob: str
    mode: int


def list_tree(workdir: Path, tree: str) -> dict[str, TreeEntry]:
    """Every file of a tree object, by path (symlinks included, submodules left out).

    A tree object is immutable, so its listing is kept per (repository, tree):
    every agent of a build reads the same base tree.
    """
    if tree == EMPTY_TREE:
        return {}
    return dict(_listing(str(Path(workdir).resolve()), tree))


@functools.lru_cache(maxsize=64)
def _listing(workdir: str, tree: str) -> tuple[tuple[str, TreeEntry], ...]:
    repo = _repo(Path(workdir))
    try:
        # A Tree made from a bare sha (`repo.tree(sha)`) has no `path`, and walking
        # into its first subdirectory raises "Attribute 'path' unset"
        # (gitpython-developers/GitPython#759); a root tree needs the path "".
        root = git.Tree(repo, bytes.fromhex(tree), mode=git.Tree.tree_id << 12, path="")
        return tuple(
            (str(item.path), TreeEntry(item.hexsha, item.mode))
            for item in root.traverse()
            if isinstance(item, git.Blob)
        )
    finally:
        repo.close()


def read_blobs(workdir: Path, blobs: list[str]) -> dict[str, bytes]:
    """The content of each blob, reading the repository once (materialising a tree)."""
    repo = _repo(workdir)
    try:
        return {blob: repo.odb.stream(bytes.fromhex(blob)).read() for blob in set(blobs)}
    finally:
        repo.close()


def read_blob(workdir: Path, blob: str) -> bytes:
    repo = _repo(workdir)
    try:
        data: bytes = repo.odb.stream(bytes.fromhex(blob)).read()
        return data
    finally:
        repo.close()


def commit_paths(workdir: Path, paths: list[str], message: str) -> str | None:
    """Stage exactly `paths` and commit them; None when they match HEAD already."""
    repo = _repo(workdir)
    try:
        if not paths:
            return None
        if not _all_staged(repo, workdir, paths):  # a rerun's files are staged already
            # `git add` in its own process, not GitPython's `index.add`: that one chdirs the
            # whole process into the work tree while it runs (index/util.py git_working_dir),
            # so two builds committing at once in one process read each other's paths.
            repo.git.add("--", *paths)
        head = head_commit(repo)
        changed = repo.index.diff(head) if head else list(repo.index.entries)
        if not changed:
            return None
        commit = repo.index.commit(message, author=AGENTMILL, committer=AGENTMILL)
        return str(commit.hexsha)
    finally:
        repo.close()


def _all_staged(repo: git.Repo, workdir: Path, paths: list[str]) -> bool:
    """Whether the index already holds each file's current content (adding would be a no-op).

    Hashing in memory and looking the index up costs about a millisecond for a
    phase; `index.add` re-hashes and rewrites the index, about ten times that.
    """
    entries = repo.index.entries
    for path in paths:
        entry = entries.get((path, 0))
        if entry is None:
            return False
        try:
            data = (workdir / path).read_bytes()
        except OSError:
            return False
        blob = hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False)
        if entry.hexsha != blob.hexdigest():
            return False
    return True
