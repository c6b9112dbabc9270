"""The phase boundary: apply a phase's change sets, record them, and make one commit.

Everything that can refuse the phase (a bad path, a key-shaped string) runs
before the first byte is written. The writes themselves are journaled in
`.tasks/pending-phase.json` until the commit exists, so a process killed in
the middle leaves a record the next run uses to put the tree back as HEAD has
it: no half-applied phase survives. The commit's trailers tie each agent's
work to its cache key, model, tokens and cost.
"""

from __future__ import annotations

import json
from pathlib import Path

from tasks.agents.output import AgentOutput, refuse_secrets, trailer_lines
from tasks.build.store import Store
from tasks.common.git import commit_paths, restore_paths
from tasks.common.logs import run_logger
from tasks.common.workspace import STORE_DIR, atomic_write_json, plan_writes, write_all

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
) -> str | None:
    """Apply, record and commit one phase; None when nothing changed against HEAD.

    `outputs` are applied in order, so a fix agent's file replaces the one it fixed.
    """
    writes = plan_writes(workdir, {o.role: o.files for o in outputs})
    refuse_secrets(outputs)
    records = [path for o in outputs for path in store.output_paths(o.role)]
    paths = sorted(writes) + records
    journal = workdir / STORE_DIR / JOURNAL
    atomic_write_json(journal, {"phase": phase, "run_id": run_id, "paths": paths})
    try:
        write_all(writes)
        for output in outputs:
            store.save_output(output)
        message = phase_commit_message(phase, outputs, run_id, provider, trailers)
        sha = commit_paths(workdir, paths, message)
    except BaseException:
        restore_paths(workdir, paths)
        journal.unlink(missing_ok=True)
        raise
    journal.unlink(missing_ok=True)
    return sha


def recover_interrupted_phase(workdir: Path) -> None:
    """Undo the writes of a phase whose process died before its commit."""
    journal = workdir / STORE_DIR / JOURNAL
    if not journal.exists():
        return
    try:
        pending = json.loads(journal.read_text())
        paths = [str(p) for p in pending["paths"]]
    except (OSError, ValueError, KeyError, TypeError):
        pending, paths = {}, []
    restore_paths(workdir, paths)
    journal.unlink()
    run_logger("agentmill.boundary").warning(
        "rolled back %d files of phase %s, left half-applied by run %s that stopped "
        "before its commit; this run applies the phase again from the cache",
        len(paths), pending.get("phase", "?"), pending.get("run_id", "?"),
    )  # fmt: skip
