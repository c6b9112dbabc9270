"""Which paths a tree's .gitignore files ignore, answered by git itself.

An agent writes into a view made of git objects, not a checkout, so there is
no work tree for `git check-ignore` to read. `IgnoreRules` puts the tree's
.gitignore files (only those) into a scratch repository and asks git there
(`check-ignore --no-index`): negations, directory patterns, nested files and
"a file under an ignored directory stays ignored" follow git's own rules
rather than a re-implementation of them. System and global config are left
out, so the answer depends on the tree alone, as an agent's output must.

The tool and the commit step call this synchronously (the tool runs inside
the agent's loop, the commit in a worker thread); a check is one short git
process, made only when the view holds a .gitignore at all.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path

from tasks.common.errors import AgentmillError
from tasks.common.git import list_tree, read_blob
from tasks.common.workspace import PathRejected

GITIGNORE = ".gitignore"
_TIMEOUT_S = 30.0


class IgnoreCheckFailed(AgentmillError, RuntimeError):
    """git could not say which paths are ignored; the message holds git's words."""


def gitignore_files(paths: Iterable[str]) -> list[str]:
    """The .gitignore files among `paths`."""
    return [p for p in paths if p == GITIGNORE or p.endswith("/" + GITIGNORE)]


class IgnoreRules:
    """The ignore rules of a set of .gitignore files ({path: content}), git's semantics."""

    def __init__(self, files: Mapping[str, bytes]) -> None:
        self.files = dict(files)
        self._root: Path | None = None

    def _materialised(self) -> Path:
        if self._root is None:
            root = Path(tempfile.mkdtemp(prefix="agentmill-ignore-"))
            weakref.finalize(self, shutil.rmtree, root, True)
            git_dir = root / "git"
            for sub in ("objects", "refs"):  # what git needs to call a directory a repository
                (git_dir / sub).mkdir(parents=True)
            (git_dir / "HEAD").write_text("ref: refs/heads/main\n")
            tree = root / "tree"
            for path, content in self.files.items():
                target = tree / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
            tree.mkdir(exist_ok=True)
            self._root = root
        return self._root

    def ignored(self, paths: Iterable[str]) -> dict[str, str]:
        """{path: the rule that ignores it} for each of `paths` an ignore rule matches."""
        wanted = [p for p in dict.fromkeys(paths) if p]
        if not self.files or not wanted:
            return {}
        root = self._materialised()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(root),
            "LC_ALL": "C",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
        }
        done = subprocess.run(
            [
                "git", f"--git-dir={root / 'git'}", f"--work-tree={root / 'tree'}",
                "check-ignore", "--no-index", "--stdin", "-z", "--verbose", "--non-matching",
            ],
            input=b"".join(p.encode() + b"\0" for p in wanted),
            capture_output=True,
            env=env,
            cwd=root / "tree",
            timeout=_TIMEOUT_S,
            check=False,
        )  # fmt: skip
        if done.returncode not in (0, 1):  # 1: none of them is ignored
            raise IgnoreCheckFailed(
                "git check-ignore failed: " + done.stderr.decode(errors="replace").strip()[-500:]
            )
        fields = done.stdout.split(b"\0")
        found: dict[str, str] = {}
        for i in range(0, len(fields) - 3, 4):  # source, line, pattern, path
            source, line, pattern, path = (f.decode(errors="replace") for f in fields[i : i + 4])
            if source and not pattern.startswith("!"):
                found[path] = f"rule {pattern!r} of {source} line {line}"
        return found


def refuse_ignored(workdir: Path, tree: str, changes: Mapping[str, Mapping[str, str]]) -> None:
    """PathRejected naming the agent if a new path of `changes` is one git ignores.

    The rules are the .gitignore files of `tree` (what the commit lands on) with
    those the change set itself writes on top. The agent's tool refused what its
    own view ignored; this catches a rule another agent of the same landing wrote.
    """
    listing = list_tree(workdir, tree)
    files = {path: read_blob(workdir, listing[path].blob) for path in gitignore_files(listing)}
    for written in changes.values():
        files.update({path: written[path].encode() for path in gitignore_files(written)})
    new = {
        path: role for role, written in changes.items() for path in written if path not in listing
    }
    found = IgnoreRules(files).ignored(new)
    if found:
        path, reason = next(iter(sorted(found.items())))
        raise PathRejected(
            f"agent {new[path]} wrote {path}, which git ignores ({reason}), so it cannot be "
            f"committed{f' (and {len(found) - 1} more)' if len(found) > 1 else ''}; write it "
            "elsewhere, or change the .gitignore in the same change"
        )
