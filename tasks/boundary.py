"""The phase boundary: apply a phase's change sets, record them, and make one commit.

All paths of the phase are validated before anything is written (see
`apply_files`); the commit's trailers tie each agent's work to its cache key,
model, tokens and cost, so `git log` alone can say what a run did and paid.
"""

from __future__ import annotations

from pathlib import Path

from tasks.agent import AgentOutput
from tasks.git import commit_paths
from tasks.store import Store
from tasks.workspace import apply_files


def commit_message(phase: str, outputs: list[AgentOutput], run_id: str, provider: str) -> str:
    roles = ", ".join(o.role for o in outputs)
    lines = [f"agentmill: {phase} phase ({len(outputs)} agents)", "", f"Agents: {roles}", ""]
    if provider == "offline":
        lines += ["Written by the OFFLINE model: placeholder documents, not a real app.", ""]
    lines += trailer_lines(outputs, run_id, provider)
    return "\n".join(lines) + "\n"


def trailer_lines(outputs: list[AgentOutput], run_id: str, provider: str) -> list[str]:
    """The `Agentmill-*` trailers: run id, provider, and each agent's key, model, tokens, cost."""
    lines = [f"Agentmill-Run: {run_id}", f"Agentmill-Provider: {provider}"]
    for o in outputs:
        u = o.usage
        lines.append(
            f"Agentmill-Agent: {o.role} key={o.cache_key} model={o.model} "
            f"tokens={u.input_tokens}in/{u.output_tokens}out/{u.cache_read_tokens}cr/"
            f"{u.cache_write_tokens}cw cost={o.cost_usd:.6f}"
        )
    return lines


def commit_phase(
    workdir: Path, store: Store, phase: str, outputs: list[AgentOutput], run_id: str, provider: str
) -> str | None:
    """Apply, record and commit one phase; None when nothing changed against HEAD."""
    written = apply_files(workdir, {o.role: o.files for o in outputs})
    recorded = [path for o in outputs for path in store.save_output(o)]
    return commit_paths(
        workdir, written + recorded, commit_message(phase, outputs, run_id, provider)
    )
