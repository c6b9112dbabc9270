"""What an agent produced: its files and its account of them, and what it cost.

An output is the agent task's only effect: the flow applies its files at a
phase (or issue) commit, downstream agents read it, and the commit's
trailers tie it to its cache key, model, tokens and cost.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, Field

from tasks.common.secrets import SecretFound, scan_text
from tasks.model.endpoint import Provider
from tasks.model.pricing import Usage


class AgentOutput(BaseModel):
    """What an agent produced, and what it cost. `files` are applied at the phase commit."""

    role: str
    summary: str
    decisions: list[str] = Field(default_factory=list)
    files: dict[str, str] = Field(default_factory=dict)
    next_steps: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    model: str
    provider: Provider
    cost_usd: float = 0.0
    uncached_cost_usd: float = Field(
        default=0.0, description="What the same requests would have cost with no prompt caching."
    )
    duration_s: float = 0.0
    cache_key: str = ""
    result: dict[str, Any] = Field(
        default_factory=dict,
        description="The structured answer of a role with a result schema (triage, plan, review).",
    )

    def digest(self) -> str:
        """Hash of the content downstream agents can read; usage and timing excluded."""
        content = self.model_dump(
            include={"role", "summary", "decisions", "files", "next_steps", "warnings"}
        )
        if self.result:  # only when present, so digests of plain outputs stay as they were
            content["result"] = self.result
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def trailer_lines(outputs: list[AgentOutput], run_id: str, provider: str) -> list[str]:
    """The `Agentmill-*` trailers: run id, provider, and each agent's key, model, tokens, cost."""
    lines = [f"Agentmill-Run: {run_id}", f"Agentmill-Provider: {provider}"]
    for o in outputs:
        if o.model == "checks":  # a verdict, not an agent: it has its own trailer
            continue
        u = o.usage
        lines.append(
            f"Agentmill-Agent: {o.role} key={o.cache_key} model={o.model} "
            f"tokens={u.input_tokens}in/{u.output_tokens}out/{u.cache_read_tokens}cr/"
            f"{u.cache_write_tokens}cw cost={o.cost_usd:.6f}"
        )
    return lines


def refuse_secrets(outputs: list[AgentOutput]) -> None:
    """Raise SecretFound, naming agent, file and line, if any output's files hold a key."""
    findings = [
        (o.role, finding)
        for o in outputs
        for path, content in sorted(o.files.items())
        for finding in scan_text(path, content)
    ]
    if findings:
        listed = "; ".join(f"agent {role}: {finding}" for role, finding in findings[:5])
        raise SecretFound(
            f"not committed: {listed}. Remove the secret from the agent's input or "
            "instructions (keys belong in blocks or env vars), then rerun"
        )
