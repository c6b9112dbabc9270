"""The write path on a real tree: names that only look safe, links, link-free writes, the lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tasks.common.workspace import (
    STORE_DIR,
    PathRejected,
    WorkdirError,
    WorkspaceBusy,
    apply_files,
    check_path,
    read_under,
    remove_under,
    resolve_inside,
    workspace_lock,
    write_under,
)
from tasks.testing.repos import git

PAYLOAD = "[core]\n\tfsmonitor = touch pwned\n"


@pytest.mark.parametrize(
    "path",
    [
        ".git/config",
        ".Git/config",
        ".GIT/hooks/pre-commit",
        "sub/.git/config",
        "deep/er/.GIT/HEAD",
        ".gi\u200ct/config",  # zero-width non-joiner: HFS+ drops it
        ".g\u034fit/config",  # combining grapheme joiner: default-ignorable
        "\ufeff.git/config",  # byte-order mark
        ".git./config",  # Windows drops trailing dots
        ".git /config",  # ... and spaces
        "git~1/config",  # the NTFS short name of .git
        ".git::$INDEX_ALLOCATION/config",  # an NTFS stream of .git
        ".\uff47\uff49\uff54/config",  # full-width letters
        ".git",
        "a/.Git",
    ],
)
def test_names_that_only_look_safe_are_dot_git_at_every_depth(path: str) -> None:
    with pytest.raises(PathRejected, match=r"inside \.git"):
        check_path(path)


@pytest.mark.parametrize("path", [".tasks/x.json", ".TASKS/manifest.json", ".Tasks\u200b/lock"])
def test_the_store_is_the_flows_own_in_any_spelling(path: str) -> None:
    with pytest.raises(PathRejected, match=r"inside \.tasks/, which only the flow writes"):
        check_path(path)
    assert check_path("docs/.tasks/notes.md") == "docs/.tasks/notes.md"  # only the top one


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("docs/" + "n" * 250 + ".md", r"a name of 253 bytes, over the 200"),
        ("docs/\ud800.md", "lone surrogate"),
        ("docs/line\nbreak.md", "control character"),
        ("docs/tab\there.md", "control character"),
        ("docs/", "names a directory"),
        ("/".join(["d" * 100] * 11), r"over 1024"),
    ],
    ids=["long-name", "surrogate", "newline", "tab", "trailing-slash", "long-path"],
)
def test_names_no_file_system_takes_are_refused(path: str, reason: str) -> None:
    with pytest.raises(PathRejected, match=reason):
        check_path(path)


def test_ordinary_names_pass_unchanged() -> None:
    for path in ("docs/café-notes.md", ".github/workflows/ci.yml", ".gitignore", "a/git/b.py"):
        assert check_path(path) == path
    assert check_path("./docs//x.md") == "docs/x.md"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository whose tree holds a file link into .git and a folder link to .git."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "docs").mkdir()
    (root / "docs" / "a.md").write_text("a\n")
    (root / "git-config").symlink_to(".git/config")
    (root / "gitlink").symlink_to(".git")
    (root / "docs-link").symlink_to("docs")  # points inside, still a link
    git(root, "add", ".")
    git(root, "commit", "-qm", "links")
    return root


def test_a_link_anywhere_on_the_path_is_refused_wherever_it_points(repo: Path) -> None:
    config = (repo / ".git" / "config").read_bytes()
    cases = {
        "git-config": "a symbolic link that leads into .git",
        "gitlink/config": "a symbolic link that leads into .git",
        "gitlink/hooks/post-commit": "a symbolic link that leads into .git",
        "docs-link/b.md": "'docs-link', a symbolic link;",
    }
    for path, reason in cases.items():
        with pytest.raises(PathRejected, match=reason):
            resolve_inside(repo, path)
        with pytest.raises(PathRejected, match="agent A wrote a rejected path"):
            apply_files(repo, {"A": {"docs/fine.md": "ok", path: PAYLOAD}})
    assert (repo / ".git" / "config").read_bytes() == config
    assert not (repo / ".git" / "hooks" / "post-commit").exists()
    assert not (repo / "docs" / "fine.md").exists()  # one bad path: nothing of the phase


def test_files_under_files_and_over_folders_are_refused_before_a_byte_is_written(
    repo: Path,
) -> None:
    with pytest.raises(PathRejected, match=r"under 'docs/a\.md', which is a file"):
        apply_files(repo, {"A": {"new.md": "x", "docs/a.md/notes.md": "x"}})
    with pytest.raises(PathRejected, match="is a directory in the workdir"):
        apply_files(repo, {"A": {"new.md": "x", "docs": "x"}})
    assert not (repo / "new.md").exists()


def test_write_under_follows_no_link_even_one_made_after_the_check(repo: Path) -> None:
    """The check and the write are separate steps; the write itself refuses links too."""
    config = (repo / ".git" / "config").read_bytes()
    (repo / "later").symlink_to(".git")
    for path in ("git-config", "later/config", "gitlink/hooks/pre-commit"):
        with pytest.raises(PathRejected):
            write_under(repo, path, PAYLOAD.encode())
        assert read_under(repo, path) is None
        assert remove_under(repo, path) is False
    assert (repo / ".git" / "config").read_bytes() == config
    assert (repo / "git-config").is_symlink() and (repo / "gitlink").is_symlink()


def test_write_under_is_atomic_keeps_modes_and_takes_long_names(repo: Path) -> None:
    script = repo / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert write_under(repo, "run.sh", b"#!/bin/sh\necho hi\n") is True
    assert script.stat().st_mode & 0o777 == 0o755
    assert write_under(repo, "run.sh", b"#!/bin/sh\necho hi\n") is False  # unchanged: no write
    long = "docs/" + "n" * 197 + ".md"  # 200 bytes: the name limit, temp file included
    assert write_under(repo, long, b"x") is True and (repo / long).read_bytes() == b"x"
    leftovers = [p.name for p in repo.rglob(".agentmill-*")]
    assert leftovers == []


def test_a_store_that_is_a_link_is_refused(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q")
    (work / STORE_DIR).symlink_to(".git")
    with pytest.raises(WorkdirError, match="symbolic link or a file"), workspace_lock(work, "r"):
        pass
    assert not (work / ".git" / "lock").exists()


# --- the lock ------------------------------------------------------------------------


def test_a_run_ending_never_frees_a_lock_another_run_took(tmp_path: Path) -> None:
    """On main, A's `finally` unlinked whatever lock was there, B's too, and let C in beside B."""
    lock = tmp_path / STORE_DIR / "lock"
    a = workspace_lock(tmp_path, "A")
    a.__enter__()
    lock.unlink()  # someone removes the file (the old error message advised it)
    b = workspace_lock(tmp_path, "B")
    b.__enter__()  # B takes a fresh file: it is the run that counts now
    a.__exit__(None, None, None)
    with pytest.raises(WorkspaceBusy, match="in use by run B"), workspace_lock(tmp_path, "C"):
        pass
    b.__exit__(None, None, None)
    with workspace_lock(tmp_path, "D"):  # every holder gone: free again
        assert json.loads(lock.read_text())["run_id"] == "D"
    assert lock.read_text() == ""  # a clean end names nobody, so nobody is "stale" next time


def _contend(workdir: Path, run_id: str, barrier: threading.Barrier, log: list[str]) -> None:
    barrier.wait()  # every contender ready: they race from here
    try:
        with workspace_lock(workdir, run_id):
            log.append(f"in {run_id}")
            time.sleep(0.05)
            log.append(f"out {run_id}")
    except WorkspaceBusy:
        log.append(f"busy {run_id}")


def test_runs_racing_for_a_stale_lock_get_in_one_at_a_time(tmp_path: Path) -> None:
    """On main, clearing a stale lock read it, then unlinked it: racing runs both got in.

    The racers are threads, each opening the lock file itself: an flock belongs to
    an open file, so they exclude each other exactly as separate processes do.
    """
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = tmp_path / STORE_DIR / "lock"
    lock.parent.mkdir()
    log: list[str] = []
    rounds, racers = 20, 8
    for attempt in range(rounds):
        stale = {"pid": dead.pid, "host": os.uname().nodename, "run_id": "dead"}
        lock.write_text(json.dumps(stale))
        barrier = threading.Barrier(racers)
        threads = [
            threading.Thread(target=_contend, args=(tmp_path, f"r{attempt}.{i}", barrier, log))
            for i in range(racers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    inside = 0
    for line in log:
        inside += {"in": 1, "out": -1, "busy": 0}[line.split()[0]]
        assert inside <= 1, log
    assert sum(line.startswith("in ") for line in log) >= rounds  # someone won each round
