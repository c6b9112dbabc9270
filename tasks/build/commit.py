"""The phase boundary: apply a phase's change sets, record them, and make one commit.

Everything that can refuse the phase runs before the first byte is written:
two agents' writes that clash, a bad path, a path git ignores, a key-shaped
string anywhere in what lands (files, output records, the commit message), a
file someone edited during the run. The writes themselves are journaled in
`.git/agentmill/pending-phase.json` (inside git's own directory, so no commit
can bring a journal with it) until the commit exists, so a process killed in
the middle leaves a record the next run uses to put back, as HEAD has them,
exactly the files it wrote. The commit's trailers tie each agent's work to its
cache key, model, tokens and cost.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Mapping
from pathlib import Path

from tasks.agents.changes import merge_changes
from tasks.agents.output import AgentOutput, refuse_secrets, trailer_lines
from tasks.build.store import Manifest, Store
from tasks.common.git import (
    HeadMoved,
    RepoStateError,
    blob_id,
    changed_since_head,
    commit_paths,
    is_ancestor,
    only_agentmill_since,
    rollback,
    state_dir,
    tree_at,
)
from tasks.common.gitignore import refuse_ignored
from tasks.common.logs import run_logger
from tasks.common.workspace import STORE_DIR, atomic_write_json, plan_writes, write_under

JOURNAL = "pending-phase.json"


def phase_commit_message(
    phase: str,
    outputs: list[AgentOutput],
    run_id: str,
    provider: str,
    trailers: list[str] | None = None,
) -> str:
    agents = [o.role for o in outputs if o.model != "checks"]
    lines = [
        f"agentmill: {phase} phase ({len(agents)} agents)",
        "",
        f"Agents: {', '.join(agents)}",
        "",
    ]
    if provider == "offline":
        lines += ["Written by the OFFLINE model: placeholder work, not a real app.", ""]
    lines += trailer_lines(outputs, run_id, provider)
    lines += trailers or []
    return "\n".join(lines) + "\n"


def commit_phase(
    workdir: Path,
    store: Store,
    phase: str,
    outputs: list[AgentOutput],
    run_id: str,
    provider: str,
    trailers: list[str] | None = None,
    *,
    parent: str | None,
    ancestors: Mapping[str, Collection[str]] | None = None,
    overrides: Collection[str] = (),
) -> str | None:
    """Apply, record and commit one phase on top of `parent`; None when nothing changed.

    `outputs` are in the order they may replace each other's files; `ancestors`
    and `overrides` say which replacements are meant (see `merge_changes`): a
    fix agent's file replaces the one it fixed.
    """
    changes = merge_changes(outputs, ancestors=ancestors, overrides=overrides)
    writes = plan_writes(workdir, changes)
    message = phase_commit_message(phase, outputs, run_id, provider, trailers)
    refuse_secrets(outputs, [("the commit message", message)])
    refuse_ignored(workdir, tree_at(workdir, parent), changes)
    files = {path: content.encode() for path, content in writes.items()}
    for output in outputs:
        files.update(store.output_files(output))
    edited = changed_since_head(workdir, files, parent)
    if edited:
        raise RepoStateError(
            f"{', '.join(sorted(edited)[:5])} changed in {workdir} during the run; agentmill "
            f"does not overwrite that work, so phase {phase} is not committed: commit or stash "
            "the change, then rerun (the agents' work is cached)"
        )
    written = {path: blob_id(data) for path, data in files.items()}
    journal = state_dir(workdir) / JOURNAL
    atomic_write_json(
        journal, {"phase": phase, "run_id": run_id, "head": parent, "written": written}
    )
    root = workdir.resolve()
    try:
        for path, data in files.items():
            write_under(root, path, data)
        sha = commit_paths(workdir, sorted(files), message, parent)
    except BaseException:
        rollback(workdir, written)
        journal.unlink(missing_ok=True)
        raise
    journal.unlink(missing_ok=True)
    return sha


def recover_interrupted_phase(workdir: Path) -> None:
    """Undo the writes of a phase whose process died before its commit.

    Only the journal in git's own directory counts: one in the tree
    (`.tasks/pending-phase.json`, where older versions kept it) could have come
    from a commit, and is ignored. Only files that still hold what the dead run
    wrote are put back; every path is checked, and none followed through a link.
    """
    log = run_logger("agentmill.boundary")
    legacy = workdir / STORE_DIR / JOURNAL
    if os.path.lexists(legacy):
        log.warning(
            "ignoring %s: agentmill keeps its journal in .git/agentmill/ (a journal in the "
            "tree could have come from a commit); remove the file",
            legacy,
        )
    journal = state_dir(workdir) / JOURNAL
    if not journal.exists():
        return
    try:
        pending = json.loads(journal.read_text())
        written = {str(path): str(blob) for path, blob in pending["written"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pending, written = {}, {}
    restored = rollback(workdir, written)
    journal.unlink()
    log.warning(
        "rolled back %d files of phase %s, left half-applied by run %s that stopped "
        "before its commit; this run applies the phase again from the cache",
        len(restored), pending.get("phase", "?"), pending.get("run_id", "?"),
    )  # fmt: skip


def refuse_moved_head(workdir: Path, previous: Manifest, head: str | None) -> None:
    """Refuse a rerun over commits made since the last one the manifest recorded.

    A rerun re-applies the cached outputs; on top of a commit that edited one of
    their files, that would undo the edit. HEAD may still be the recorded
    commit, or one of its ancestors (the user dropped agentmill's commits).
    """
    recorded = previous.head
    if recorded is None and "head" not in previous.model_fields_set:  # an older manifest
        commits = [entry.commit for entry in previous.phases.values() if entry.commit]
        recorded = commits[-1] if commits else previous.base_commit
    if head == recorded or (head and recorded and is_ancestor(workdir, head, recorded)):
        return
    if head and only_agentmill_since(workdir, recorded, head):
        return  # a run killed between its commit and its manifest: those commits are its own
    raise HeadMoved(
        f"{workdir} has moved on since agentmill's last run there (HEAD is {str(head)[:12]}, "
        f"the run recorded {str(recorded)[:12]}): a rerun would re-apply its cached files over "
        "the newer commits and undo them. Rerun with --fresh (fresh=True) to build on the "
        "current HEAD as a new base"
    )
