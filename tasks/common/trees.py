"""A candidate tree: a base tree from git objects plus change sets, as files on a throwaway disk.

What checks and the `run` tool see is fixed by content, never by the state
of a working tree: the base tree comes from git objects (so a file someone
edits in the workdir meanwhile changes nothing), the change sets are
applied in order on top, and `.git` and `.tasks` never appear. The digest
names that content, so a check's result can be cached by it.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tasks.common.git import list_tree, read_blobs

_LEFT_OUT = (".git", ".tasks")


@dataclass(frozen=True)
class CandidateTree:
    """The base tree of `workdir`'s repository plus `layers` ({path: text}), later ones winning."""

    workdir: str
    base_tree: str
    layers: tuple[Mapping[str, str], ...] = ()

    def overlay(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for layer in self.layers:
            merged.update(layer)
        return {p: c for p, c in merged.items() if not _left_out(p)}

    def paths(self) -> list[str]:
        base = [p for p in list_tree(Path(self.workdir), self.base_tree) if not _left_out(p)]
        return sorted({*base, *self.overlay()})

    def digest(self) -> str:
        """A hash of the tree's content: the base tree's id and every file laid over it."""
        h = hashlib.sha256(self.base_tree.encode())
        for path, content in sorted(self.overlay().items()):
            h.update(b"\0" + path.encode() + b"\0" + hashlib.sha256(content.encode()).digest())
        return h.hexdigest()

    def materialise(self, into: Path) -> Path:
        """Write the tree into the empty directory `into`; returns it."""
        into.mkdir(parents=True, exist_ok=True)
        entries = {
            p: e
            for p, e in list_tree(Path(self.workdir), self.base_tree).items()
            if not _left_out(p)
        }
        overlay = self.overlay()
        blobs = read_blobs(
            Path(self.workdir), [e.blob for p, e in entries.items() if p not in overlay]
        )
        for path, entry in entries.items():
            if path in overlay:
                continue
            target = into / path
            target.parent.mkdir(parents=True, exist_ok=True)
            data = blobs[entry.blob]
            if stat.S_ISLNK(entry.mode):
                _link_inside(into, target, data.decode(errors="replace"))
                continue
            target.write_bytes(data)
            if entry.mode & 0o111:
                target.chmod(0o755)
        for path, content in overlay.items():
            target = into / path
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink():
                target.unlink()
            target.write_text(content, encoding="utf-8")
        return into


def _left_out(path: str) -> bool:
    return PurePosixPath(path).parts[0] in _LEFT_OUT


def _link_inside(root: Path, link: Path, target: str) -> None:
    """Recreate a symlink of the tree only if it stays inside the copy; else leave it out."""
    resolved = os.path.normpath(os.path.join(link.parent, target))
    if os.path.isabs(target) or not resolved.startswith(str(root) + os.sep):
        return
    link.symlink_to(target)
