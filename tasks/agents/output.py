"""What an agent produced: its files and its account of them, and what it cost.

An output is the agent task's only effect: the flow applies its files at a
phase (or issue) commit, downstream agents read it, and the commit's
trailers tie it to its cache key, model, tokens and cost.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from tasks.common.secrets import SecretFound, scan_text
from tasks.model.endpoint import Provider
from tasks.model.pricing import Usage


class Refusal(BaseModel):
    """A tool call the run refused, as the model was told; path and reason are redacted."""

    tool: str
    path: str = ""
    reason: str


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
    refused: list[Refusal] = Field(
        default_factory=list,
        description="Tool calls refused during the run (a write to a bad path, a bad argument).",
    )

    def __setstate__(self, state: dict[Any, Any]) -> None:
        """Unpickle an output cached before a field existed: the field takes its default.

        Results persist as pickles, and pydantic restores only the fields a pickle
        holds; without this, every output cached before `refused` (or any later
        field) would fail on first use instead of being reused.
        """
        values = state.get("__dict__", {})
        for name, info in type(self).model_fields.items():
            if name not in values and not info.is_required():
                values[name] = info.get_default(call_default_factory=True)
        super().__setstate__(state)

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


def output_texts(output: AgentOutput) -> list[tuple[str, str]]:
    """Every text of an output that leaves the run: its files, their names, and its words.

    The words (summary, decisions, ...) land in `.tasks/<ROLE>/output.json`, in
    pull-request bodies and in dependants' prompts, so they are scanned as the
    files are.
    """
    texts = sorted(output.files.items())
    texts += [
        ("its file names", "\n".join(sorted(output.files))),
        ("its summary", output.summary),
        ("its decisions", "\n".join(output.decisions)),
        ("its next steps", "\n".join(output.next_steps)),
        ("its warnings", "\n".join(output.warnings)),
        ("its refused calls", "\n".join(f"{r.path} {r.reason}" for r in output.refused)),
    ]
    if output.result:
        texts.append(("its result", json.dumps(output.result, indent=1, ensure_ascii=False)))
    return texts


def refuse_secrets(outputs: Sequence[AgentOutput], others: Sequence[tuple[str, str]] = ()) -> None:
    """Raise SecretFound, naming agent, place and line, if anything that lands holds a key.

    `others` are further texts that land with the outputs, as (what, text): the
    commit message, the pull request's title and body.
    """
    findings = [
        f"agent {o.role}: {finding}"
        for o in outputs
        for where, text in output_texts(o)
        for finding in scan_text(where, text)
    ]
    findings += [str(finding) for where, text in others for finding in scan_text(where, text)]
    if findings:
        raise SecretFound(
            f"not committed: {'; '.join(findings[:5])}. Remove the secret from the agent's "
            "input or instructions (keys belong in blocks or env vars), then rerun"
        )
