"""The approval gate's form: what a person reads and answers before the build goes on.

Shown by the Prefect UI when build_app pauses after planning (approve_plan=True);
the same form can be answered through the API (`resume_flow_run(..., run_input=...)`).
"""

from __future__ import annotations

from typing import Literal

from prefect.input import RunInput
from pydantic import Field

from tasks.agents.output import AgentOutput

MAX_REVIEW_CHARS = 6000


class PlanReview(RunInput):
    """Approve the plan, or send it back to the PM with a comment."""

    requirements: str = Field(default="", description="The planning phase's output, to read.")
    decision: Literal["approve", "request-changes"] = Field(
        default="approve", description="approve: build it; request-changes: the PM revises first."
    )
    comment: str = Field(default="", description="What the PM should change.")


def review_text(outputs: list[AgentOutput]) -> str:
    """The planning outputs as one readable text: summaries, decisions, then the documents."""
    parts: list[str] = []
    for output in outputs:
        parts.append(f"## {output.role}: {output.summary}")
        parts += [f"- {decision}" for decision in output.decisions]
        for path, content in sorted(output.files.items()):
            parts += [f"### {path}", content]
    text = "\n".join(parts)
    if len(text) > MAX_REVIEW_CHARS:
        text = text[:MAX_REVIEW_CHARS] + "\n[... cut; the full documents are in the workdir]"
    return text
