"""The issue team: triage, coordinator, code agents and reviewer, with their structured results.

These are ordinary agentmill roles run by the same agent task as build_app's
team; what sets them apart is a result schema: `submit` must carry a
`result` object (checked in the tool loop, so the model can correct itself),
which the pipeline then reads through the pydantic models here. A subtask's
text is part of its code agent's instructions, hence of its cache key.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError, model_validator

from blocks.team import DEFAULT_TIER_MODELS, DEFAULT_TIER_TIMEOUTS_S, Role
from tasks.agents.graph import CycleError, topological_order
from tasks.agents.job import AgentSettings
from tasks.agents.output import AgentOutput
from tasks.common.errors import AgentmillError
from tasks.issues.github import Issue

MAX_ISSUE_CHARS = 20_000
MAX_SUBTASKS = 6

TRIAGE = "ISSUE_TRIAGE"
COORDINATOR = "ISSUE_COORDINATOR"
CHECKS = "ISSUE_CHECKS"
REVIEW = "ISSUE_REVIEW"

# The fixed taxonomy: triage may only pick from these, and only these labels
# are put on an issue, so a model cannot invent labels in someone's repository.
TYPES = ("bug", "feature", "docs", "refactor", "test", "chore")
PRIORITIES = ("critical", "high", "medium", "low")
COMPLEXITIES = ("small", "medium", "large")
TAXONOMY_LABELS: tuple[str, ...] = (
    *(f"type:{t}" for t in TYPES),
    *(f"priority:{p}" for p in PRIORITIES),
    *(f"complexity:{c}" for c in COMPLEXITIES),
    "security",
    "needs-tests",
    "breaking-change",
)

TRIAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "priority", "complexity", "labels"],
    "properties": {
        "type": {"type": "string", "enum": list(TYPES)},
        "priority": {"type": "string", "enum": list(PRIORITIES)},
        "complexity": {"type": "string", "enum": list(COMPLEXITIES)},
        "labels": {"type": "array", "items": {"type": "string", "enum": list(TAXONOMY_LABELS)}},
        "rationale": {"type": "string"},
    },
}

PLAN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["subtasks"],
    "properties": {
        "subtasks": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "title", "description"],
                "properties": {
                    "id": {"type": "integer", "minimum": 1, "maximum": MAX_SUBTASKS},
                    "title": {"type": "string"},
                    "description": {"type": "string"},
                    "depends_on": {"type": "array", "items": {"type": "integer"}},
                    "files": {"type": "array", "items": {"type": "string"}},
                },
            },
        }
    },
}

REVIEW_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["score", "approve"],
    "properties": {
        "score": {"type": "integer", "minimum": 0, "maximum": 100},
        "approve": {"type": "boolean"},
        "fixes": {"type": "array", "items": {"type": "string"}},
        "notes": {"type": "string"},
    },
}


class ResultError(AgentmillError, ValueError):
    """An agent's structured result does not make sense; the message names the agent."""


class Triage(BaseModel):
    type: Literal["bug", "feature", "docs", "refactor", "test", "chore"]
    priority: Literal["critical", "high", "medium", "low"]
    complexity: Literal["small", "medium", "large"]
    labels: list[str] = Field(default_factory=list)
    rationale: str = ""

    def issue_labels(self) -> list[str]:
        """Labels to put on the issue: the classification plus any extra taxonomy labels."""
        base = [f"type:{self.type}", f"priority:{self.priority}", f"complexity:{self.complexity}"]
        extra = [label for label in self.labels if label in TAXONOMY_LABELS]
        return list(dict.fromkeys([*base, *extra]))


class Subtask(BaseModel):
    id: int = Field(ge=1, le=MAX_SUBTASKS)
    title: str = Field(min_length=1)
    description: str
    depends_on: list[int] = Field(default_factory=list)
    files: list[str] = Field(default_factory=list)


class IssuePlan(BaseModel):
    """The coordinator's split of an issue into subtasks: a small DAG."""

    subtasks: list[Subtask] = Field(min_length=1, max_length=MAX_SUBTASKS)

    @model_validator(mode="after")
    def _a_dag(self) -> IssuePlan:
        ids = [s.id for s in self.subtasks]
        if len(set(ids)) != len(ids):
            raise ValueError(f"subtask ids repeat: {ids}")
        for s in self.subtasks:
            unknown = [d for d in s.depends_on if d not in ids or d == s.id]
            if unknown:
                raise ValueError(f"subtask {s.id} depends on unknown or itself: {unknown}")
        self.order()  # raises on a cycle
        return self

    def order(self) -> list[Subtask]:
        """Subtasks with each after its dependencies (a cycle is an error naming them)."""
        by_id = {s.id: s for s in self.subtasks}
        deps = {
            str(s.id): [str(d) for d in s.depends_on]
            for s in sorted(self.subtasks, key=lambda s: s.id)
        }
        try:
            order = topological_order(deps)
        except CycleError as exc:
            raise ValueError(
                f"subtasks {' -> '.join(exc.cycle)} depend on each other in a cycle"
            ) from None
        return [by_id[int(i)] for i in order]


class Verdict(BaseModel):
    score: int = Field(ge=0, le=100)
    approve: bool
    fixes: list[str] = Field(default_factory=list)
    notes: str = ""


M = TypeVar("M", bound=BaseModel)


def parse_result(model: type[M], output: AgentOutput) -> M:
    """The agent's `result` as `model`, or ResultError naming the agent and what is wrong."""
    try:
        return model.model_validate(output.result)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'result'}: {e['msg']}" for e in exc.errors()
        )
        raise ResultError(
            f"agent {output.role} returned an unusable "
            f"{model.__name__.removeprefix('Issue').lower()}: {problems}"
        ) from exc


# --- roles -----------------------------------------------------------------


def issue_brief(repo: str, issue: Issue) -> str:
    """The text every issue agent reads as its brief's `idea`: the issue, capped in size."""
    body = issue.body.strip() or "(no description)"
    if len(body) > MAX_ISSUE_CHARS:
        body = body[:MAX_ISSUE_CHARS] + "\n\n[... the issue continues; truncated by agentmill]"
    return f"GitHub issue {repo}#{issue.number}: {issue.title.strip()}\n\n{body}"


def _role(id: str, title: str, track: str, tier: str, deps: list[str], text: str) -> Role:
    return Role(
        id=id, title=title, phase="issue", track=track, tier=tier, depends_on=deps,
        instructions=text,
    )  # fmt: skip


def triage_role() -> Role:
    return _role(
        TRIAGE, "Issue triager", "triage", "haiku", [],
        "The brief's `idea` is a GitHub issue. Read it and the repository (list_files, "
        "read_file) as far as you need, then classify it: type, priority and complexity, and "
        "any further labels, all from the fixed taxonomy in your result schema. Write no "
        "files. Put the classification in submit's `result`, with a one-line rationale.",
    )  # fmt: skip


def coordinator_role() -> Role:
    return _role(
        COORDINATOR, "Issue coordinator", "plan", "sonnet", [TRIAGE],
        "Split the issue into subtasks for code agents, in submit's `result`. A small issue "
        f"is one subtask; never more than {MAX_SUBTASKS}. Give each an id (1, 2, ...), a "
        "title, a description precise enough to implement alone, the files it owns (no two "
        "subtasks write the same file) and `depends_on`: the ids that must be done first "
        "(independent subtasks run at the same time). Read the triage output and the "
        "repository first. Write no files.",
    )  # fmt: skip


def code_role_id(subtask_id: int) -> str:
    return f"ISSUE_CODE_{subtask_id}"


def fix_role_id(subtask_id: int) -> str:
    return f"ISSUE_CODE_{subtask_id}_FIX"


def code_role(subtask: Subtask) -> Role:
    deps = [COORDINATOR, *(code_role_id(d) for d in sorted(subtask.depends_on))]
    files = ", ".join(subtask.files) or "as you see fit"
    return _role(
        code_role_id(subtask.id), f"Code agent, subtask {subtask.id}", "code", "haiku", deps,
        f"Implement subtask {subtask.id} of the issue: {subtask.title}.\n{subtask.description}\n"
        f"Files: {files}. Read the files you change first and follow the repository's style. "
        "Write the tests with the code, in the repository's test layout. Write only what "
        "this subtask needs.",
    )  # fmt: skip


def review_role(round_: int, code_roles: list[str]) -> Role:
    checks = checks_role_id(round_)
    final = (
        "This is the final review after a round of fixes: there is no further round."
        if round_ > 1
        else "If it needs changes, set approve to false and list concrete fixes."
    )
    return _role(
        review_role_id(round_), "Issue reviewer", "review", "sonnet", [checks, *code_roles],
        f"Review the change for the issue. read_output('{checks}') holds the findings of "
        "ruff, the security scan, the secret scan and the repository's tests on the changed "
        "tree; read the code agents' outputs and their files too. In submit's `result` give "
        f"a quality score from 0 to 100 and approve or not. {final} Write no files.",
    )  # fmt: skip


def fix_role(subtask: Subtask) -> Role:
    deps = [COORDINATOR, code_role_id(subtask.id), REVIEW]
    return _role(
        fix_role_id(subtask.id), f"Code agent, fixes for subtask {subtask.id}", "code", "haiku",
        deps,
        f"The reviewer asked for fixes (read_output('{REVIEW}')). Fix what concerns subtask "
        f"{subtask.id} ({subtask.title}) in its files, and its tests; rewrite each file you "
        "change in full. Leave other subtasks' files alone.",
    )  # fmt: skip


def checks_role_id(round_: int) -> str:
    return CHECKS if round_ == 1 else f"{CHECKS}_{round_}"


def review_role_id(round_: int) -> str:
    return REVIEW if round_ == 1 else f"{REVIEW}_{round_}"


def settings_for(role: Role) -> AgentSettings:
    """The model and caps of a role, from its tier (the team's defaults)."""
    return AgentSettings(
        model=DEFAULT_TIER_MODELS[role.tier],
        timeout_s=DEFAULT_TIER_TIMEOUTS_S[role.tier],
    )
