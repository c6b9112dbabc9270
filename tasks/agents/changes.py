"""Several agents' change sets made one, where they land together (a phase, an issue).

Two agents that write the same path both meant their version. If the later
one read the earlier one's output (it is among its dependencies), its file is
an edit of what it read and replaces it; otherwise neither saw the other, and
taking either would silently drop work: that is a conflict, named with both
agents. A pipeline may also name roles whose writes replace earlier ones on
purpose (agents that fix what checks found), as `overrides`. Paths that are
one file on a case-insensitive disk, or a file and a folder at once, are
conflicts too: the commit could not hold both.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from tasks.agents.output import AgentOutput
from tasks.common.errors import AgentmillError
from tasks.common.workspace import PathRejected, check_path, fold_path


class WriteConflict(AgentmillError, ValueError):
    """Two agents' writes cannot both land; the message names both and says what to change."""


def merge_changes(
    outputs: Sequence[AgentOutput],
    *,
    ancestors: Mapping[str, Collection[str]] | None = None,
    overrides: Collection[str] = (),
) -> dict[str, dict[str, str]]:
    """The outputs' files, in order, as one change set: {role: {path: content}}, each path once.

    `ancestors[role]` are the roles `role` read (its transitive dependencies): it
    may replace their files. A role in `overrides` may replace anyone's.
    """
    ancestors = ancestors or {}
    owner: dict[str, str] = {}  # path -> the role whose version lands
    content: dict[str, str] = {}
    for output in outputs:
        for raw, text in output.files.items():
            try:
                path = check_path(raw)
            except PathRejected as exc:
                raise PathRejected(f"agent {output.role} wrote a rejected path: {exc}") from exc
            earlier = owner.get(path)
            if (
                earlier is not None
                and earlier != output.role
                and output.role not in overrides
                and earlier not in ancestors.get(output.role, ())
            ):
                raise WriteConflict(
                    f"agents {earlier} and {output.role} both wrote {path}, and neither read "
                    "the other's version, so one would silently replace the other; make one "
                    "depend on the other, or leave the file to one of them"
                )
            owner[path], content[path] = output.role, text
    _refuse_shape_clashes(owner)
    merged: dict[str, dict[str, str]] = {}
    for path, role in owner.items():
        merged.setdefault(role, {})[path] = content[path]
    return merged


def _refuse_shape_clashes(owner: Mapping[str, str]) -> None:
    """A file that is also a folder (`lib`, `lib/mod.py`), or two spellings of one file."""
    folded: dict[str, str] = {}
    for path in sorted(owner):
        same = folded.setdefault(fold_path(path), path)
        if same != path:
            raise WriteConflict(
                f"agent {owner[same]} wrote {same} and agent {owner[path]} wrote {path}: they "
                "differ only in case or Unicode form, and on macOS and Windows they are one "
                "file; use one spelling"
            )
    for path in owner:
        parts = fold_path(path).split("/")
        for depth in range(1, len(parts)):
            folder = folded.get("/".join(parts[:depth]))
            if folder is not None:
                raise WriteConflict(
                    f"agent {owner[folder]} wrote {folder} as a file and agent {owner[path]} "
                    f"wrote {path} inside it as a folder; one path cannot be both"
                )


def refuse_protected(
    changes: Mapping[str, Mapping[str, str]], protected: Mapping[str, str]
) -> None:
    """PathRejected if a change set writes under a protected top-level folder.

    write_file refuses these already; this holds at the landing too, whatever
    produced the change set.
    """
    folders = {fold_path(folder): (folder, why) for folder, why in protected.items()}
    for role, files in changes.items():
        for path in files:
            found = folders.get(fold_path(path.split("/", 1)[0])) if "/" in path else None
            if found is not None:
                raise PathRejected(
                    f"agent {role} wrote {path}, under {found[0]}/, which {found[1]}; nothing "
                    "of the change lands"
                )
