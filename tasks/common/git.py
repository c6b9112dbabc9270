"""Git for the workdir (GitPython): the base tree agents read, and one commit per phase.

Agents read the base tree from git objects, not from the working tree, so what
they see cannot change while earlier phases commit around them. A phase's
commit is built from its own index (HEAD's tree plus the phase's paths), not
the repository's, and HEAD moves only from the commit the run expects: what
the user staged or committed meanwhile is never swept into it or built over.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import git
from git.index.fun import write_tree_from_cache
from git.index.typ import BaseIndexEntry, IndexEntry
from git.objects.fun import traverse_tree_recursive
from gitdb import IStream

from tasks.common.errors import AgentmillError
from tasks.common.workspace import check_path, read_under, remove_under, write_under

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
AGENTMILL = git.Actor("agentmill", "agentmill@users.noreply.localhost")
SYMLINK_MODE = 0o120000
_FILE_MODES = (0o100644, 0o100755)
_NO_COMMIT = "0" * 40
STATE_DIR = "agentmill"  # under the repository's git dir: run state no commit can bring
_INDEX_LOCK_TRIES, _INDEX_LOCK_WAIT_S = 40, 0.05  # up to 2 s for another git's index lock

# Run state that must never be committed: it changes on every run (times,
# session ids), so committing it would turn a fully cached rerun into a commit.
_EXCLUDES = (
    "/.tasks/manifest.json",
    "/.tasks/report.*",
    "/.tasks/lock",
    "/.tasks/pending-phase.json",
    "/.tasks/.*.tmp",
    ".agentmill-*.tmp",  # write_under's temp file, should a run be killed in mid-write
)


class RepoStateError(AgentmillError, ValueError):
    """The repository is in a state agentmill must not build on; the message says why."""


class HeadMoved(RepoStateError):
    """The branch moved on from the commit the run expected (someone committed meanwhile)."""


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


def blob_id(data: bytes) -> str:
    """The id git gives a blob of `data` (so content can be compared without storing it)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def state_dir(workdir: Path) -> Path:
    """`<git dir>/agentmill`: run state that must not come from (or go into) a commit."""
    repo = git.Repo(workdir)
    try:
        path = Path(repo.git_dir) / STATE_DIR
    finally:
        repo.close()
    path.mkdir(exist_ok=True)
    return path


def _head_entries(repo: git.Repo, head: str | None) -> dict[str, tuple[int, bytes]]:
    """{path: (mode, binary id)} of every entry of HEAD's tree (links and submodules too).

    A new dict each time (callers add to it); the walk itself is kept per tree.
    """
    if head is None:
        return {}
    tree = repo.commit(head).tree.hexsha
    return dict(_tree_entries(str(repo.git_dir), tree))


@functools.lru_cache(maxsize=16)
def _tree_entries(git_dir: str, tree: str) -> tuple[tuple[str, tuple[int, bytes]], ...]:
    """A tree's entries, walked once: a phase's checks and its commit read the same HEAD."""
    repo = git.Repo(git_dir, odbt=git.GitDB)
    try:
        walked = traverse_tree_recursive(repo.odb, bytes.fromhex(tree), "")
        return tuple((path, (mode, binsha)) for binsha, mode, path in walked)
    finally:
        repo.close()


def rollback(workdir: Path, written: Mapping[str, str]) -> list[str]:
    """Put back as HEAD has them the files a run wrote and did not commit; returns those.

    `written` maps each path to the blob id of what the run wrote there (its
    journal). A file that no longer holds that was changed by someone since
    and is left alone; so is a path that is not a plain relative path or that
    goes through a link: a journal only names paths, and nothing is unlinked or
    written on a path's word alone. Only regular files are written or removed.
    """
    root = workdir.resolve()
    repo = _repo(workdir)
    try:
        head = head_commit(repo)
        entries = _head_entries(repo, head)
        restored: list[str] = []
        for path, blob in written.items():
            try:
                relative = check_path(path, store=True)
            except ValueError:
                continue
            data = read_under(root, relative)
            if data is None or blob_id(data) != blob:
                continue  # not what the run wrote (or never written): not the run's to undo
            entry = entries.get(relative)
            if entry is None:
                remove_under(root, relative)
            elif entry[0] in _FILE_MODES:
                write_under(root, relative, repo.odb.stream(entry[1]).read())
            else:
                continue  # HEAD has a link or a submodule there: leave it to the user
            restored.append(relative)
        if restored and head:  # a run killed after its commit, before the index: resync
            repo.git.reset("-q", head, "--", *restored)
        elif restored:
            repo.git.rm("--cached", "-q", "--ignore-unmatch", "--", *restored)
        return restored
    finally:
        repo.close()


def changed_since_head(workdir: Path, paths: Mapping[str, bytes], head: str | None) -> list[str]:
    """Paths whose file in the working tree is neither HEAD's version nor absent from both.

    A phase overwrites files; such a file was edited during the run (the tree
    was clean when it started), and the edit is someone's work.
    """
    root = workdir.resolve()
    repo = _repo(workdir)
    try:
        entries = _head_entries(repo, head)
    finally:
        repo.close()
    changed = []
    for path, data in paths.items():
        current = read_under(root, path)
        entry = entries.get(path)
        if current is None or current == data:
            continue
        if entry is None or entry[1].hex() != blob_id(current):
            changed.append(path)
    return changed


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


def tree_at(workdir: Path, commit: str | None) -> str:
    """The tree of `commit` in the workdir's repository (the empty tree for None)."""
    repo = _repo(workdir)
    try:
        return tree_of(repo, commit)
    finally:
        repo.close()


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


def commit_paths(workdir: Path, paths: list[str], message: str, parent: str | None) -> str | None:
    """Commit exactly `paths`, as the working tree holds them, on top of `parent`.

    Returns the new commit, or None when the paths match HEAD already. The
    commit is built from its own index, HEAD's entries plus these paths, so
    nothing the user staged meanwhile rides along. HEAD moves only if it still
    is `parent` (`git update-ref` compares and swaps under git's ref lock), so a
    commit the user made during the run is neither built over nor lost. Then
    the repository's index takes these paths' new entries, and no others.
    """
    if not paths:
        return None
    root = workdir.resolve()
    repo = _repo(workdir)
    try:
        head = head_commit(repo)
        if head != parent:
            raise HeadMoved(_moved(workdir, parent, head))
        entries = _head_entries(repo, head)
        changed = []
        for path in paths:
            data = read_under(root, path)
            if data is None:
                raise RepoStateError(f"{path} is gone from {workdir} before its commit; rerun")
            old = entries.get(path)
            if old is not None and old[1].hex() == blob_id(data):
                continue
            _refuse_entry_clash(entries, path)
            mode = old[0] if old is not None and old[0] in _FILE_MODES else 0o100644
            stored = repo.odb.store(IStream(b"blob", len(data), BytesIO(data)))
            entries[path] = (mode, stored.binsha)
            changed.append(path)
        if not changed:
            return None
        # Git orders index entries by the bytes of their paths; trees are built in that order.
        ordered = sorted(
            entries.items(), key=lambda item: item[0].encode("utf-8", "surrogateescape")
        )
        cache = [
            IndexEntry.from_base(BaseIndexEntry((mode, binsha, 0, path)))
            for path, (mode, binsha) in ordered
        ]
        tree, _ = write_tree_from_cache(cache, repo.odb, slice(0, len(cache)))
        commit = git.Commit.create_from_tree(
            repo,
            git.Tree(repo, tree),
            message,
            parent_commits=[repo.commit(head)] if head else [],
            head=False,
            author=AGENTMILL,
            committer=AGENTMILL,
        )
        # The branch moves and the index follows under one hold of git's index lock:
        # a user's `git commit` in between would see the new HEAD with the old index
        # and take the phase's new files out again.
        with _index_locked(repo, root) as lock:
            try:
                repo.git.update_ref(
                    "-m", f"agentmill: {message.splitlines()[0]}", "HEAD", commit.hexsha,
                    head or _NO_COMMIT,
                )  # fmt: skip
            except git.GitCommandError as exc:
                raise HeadMoved(_moved(workdir, parent, head_commit(repo))) from exc
            _stage(repo, lock, {path: entries[path] for path in changed})
        return str(commit.hexsha)
    finally:
        repo.close()


def _refuse_entry_clash(entries: Mapping[str, tuple[int, bytes]], path: str) -> None:
    """A file where HEAD has a folder, or under one of HEAD's files, links or submodules."""
    parts = path.split("/")
    for depth in range(1, len(parts)):
        prefix = "/".join(parts[:depth])
        if prefix in entries:
            raise RepoStateError(
                f"{path} would go under {prefix}, which HEAD has as a file, a link or a "
                "submodule; nothing of the phase is committed"
            )
    if path not in entries and any(other.startswith(path + "/") for other in entries):
        raise RepoStateError(f"{path} is a folder in HEAD, not a file; nothing is committed")


@contextlib.contextmanager
def _index_locked(repo: git.Repo, root: Path) -> Iterator[Path]:
    """Hold `.git/index.lock` as git itself does: created exclusively, renamed over the index.

    The body writes the new index into the yielded lock file; on success it
    replaces the index at once, on any error it is removed and the index is
    untouched. Another git holding the lock is waited for a little; if it holds
    on, nothing is committed (git's own commands refuse the same way).
    """
    index = Path(repo.git_dir) / "index"
    lock = index.with_name("index.lock")
    for _attempt in range(_INDEX_LOCK_TRIES):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            time.sleep(_INDEX_LOCK_WAIT_S)
    else:
        raise RepoStateError(
            f"{lock} is held by another git process, so agentmill does not commit now; once "
            "that process is done (or, if none runs, after removing the file), rerun: the "
            "agents' work is cached"
        )
    os.close(fd)
    try:
        yield lock
        os.replace(lock, index)
    except BaseException:
        lock.unlink(missing_ok=True)
        raise


def _stage(repo: git.Repo, lock: Path, changed: Mapping[str, tuple[int, bytes]]) -> None:
    """Write into `lock` the index with exactly the committed entries of these paths changed.

    Starts from the index as it is (under the lock, so nothing changes it
    meanwhile): whatever the user staged stays staged. It is given the
    committed blobs, not the files, so an edit made since is not staged either.
    """
    index = Path(repo.git_dir) / "index"
    scratch = index.with_name("agentmill-index")
    if index.exists():
        shutil.copyfile(index, scratch)
    else:
        scratch.unlink(missing_ok=True)
    lines = "".join(
        f"{mode:o} {binsha.hex()}\t{path}\n" for path, (mode, binsha) in changed.items()
    )
    try:
        with tempfile.TemporaryFile() as listing:  # GitPython pipes stdin from a real file
            listing.write(lines.encode())
            listing.seek(0)
            repo.git.update_index(
                "--index-info", istream=listing, env={"GIT_INDEX_FILE": str(scratch)}
            )
        os.replace(scratch, lock)
    finally:
        scratch.unlink(missing_ok=True)


def _moved(workdir: Path, expected: str | None, found: str | None) -> str:
    return (
        f"the branch of {workdir} moved during the run (expected {str(expected)[:12]}, found "
        f"{str(found)[:12]}): a commit was made meanwhile, and agentmill does not build over "
        "it. Nothing of this phase is committed; rerun with fresh to build on the new HEAD "
        "(the agents' work is cached)"
    )


def is_ancestor(workdir: Path, ancestor: str, descendant: str) -> bool:
    """Whether `ancestor` is `descendant` or one of its ancestors (False if either is unknown)."""
    repo = _repo(workdir)
    try:
        return bool(repo.is_ancestor(repo.commit(ancestor), repo.commit(descendant)))
    except (git.GitCommandError, ValueError):
        return False
    finally:
        repo.close()


def only_agentmill_since(workdir: Path, since: str | None, head: str, limit: int = 100) -> bool:
    """Whether every commit after `since` up to `head` (at most `limit`) is agentmill's own."""
    repo = _repo(workdir)
    try:
        span = f"{since}..{head}" if since else head
        commits = list(repo.iter_commits(span, max_count=limit + 1))
    except (git.GitCommandError, ValueError):
        return False
    finally:
        repo.close()
    return len(commits) <= limit and all(c.author.email == AGENTMILL.email for c in commits)
