"""The issue team's structured results: schema checks in the tool loop, plans, offline script."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.agents.errors import ToolError
from tasks.agents.output import AgentOutput
from tasks.agents.prompts import TOOLS, tools_for
from tasks.agents.tools import AgentView, Submission, call_tool
from tasks.common.git import EMPTY_TREE
from tasks.issues.offline_script import plan_of, triage_of
from tasks.issues.team import (
    PLAN_SCHEMA,
    TRIAGE_SCHEMA,
    IssuePlan,
    ResultError,
    Triage,
    parse_result,
)


def view(schema: dict[str, object] | None, upstream: list[AgentOutput] | None = None) -> AgentView:
    return AgentView(
        workdir=Path("."),
        base_tree=EMPTY_TREE,
        brief={},
        upstream=upstream or [],
        result_schema=schema,  # type: ignore[arg-type]
    )


SUBMIT = {"summary": "done"}


async def test_submit_must_carry_a_result_that_matches_the_schema() -> None:
    with pytest.raises(ToolError, match="must pass `result`"):
        await call_tool(view(TRIAGE_SCHEMA), "submit", SUBMIT)
    bad = {"type": "bug", "priority": "urgent", "complexity": "small", "labels": []}
    with pytest.raises(ToolError, match=r"result.priority must be one of .*\"high\""):
        await call_tool(view(TRIAGE_SCHEMA), "submit", {**SUBMIT, "result": bad})
    with pytest.raises(ToolError, match=r"result.labels\[0\] must be one of"):
        await call_tool(
            view(TRIAGE_SCHEMA),
            "submit",
            {**SUBMIT, "result": {**bad, "priority": "high", "labels": ["made-up"]}},
        )
    with pytest.raises(ToolError, match=r"result.subtasks\[0\] is missing 'title'"):
        await call_tool(
            view(PLAN_SCHEMA), "submit", {**SUBMIT, "result": {"subtasks": [{"id": 1}]}}
        )
    good = {"type": "bug", "priority": "high", "complexity": "small", "labels": ["security"]}
    submission = await call_tool(view(TRIAGE_SCHEMA), "submit", {**SUBMIT, "result": good})
    assert isinstance(submission, Submission) and submission.result == good


async def test_roles_without_a_schema_see_and_submit_exactly_as_before() -> None:
    assert tools_for(None) is TOOLS
    submission = await call_tool(view(None), "submit", {**SUBMIT, "result": {"ignored": True}})
    assert isinstance(submission, Submission) and submission.result is None
    plain = AgentOutput(role="PM", summary="s", model="m", provider="offline")
    assert "result" not in json.loads(view(None, [plain]).read_output("PM"))
    submit = next(t for t in tools_for(PLAN_SCHEMA) if t["name"] == "submit")
    assert submit["input_schema"]["required"] == ["summary", "result"]
    assert next(t for t in TOOLS if t["name"] == "submit")["input_schema"]["required"] == [
        "summary"
    ]


def test_a_plan_is_a_dag_of_known_subtasks() -> None:
    def output(subtasks: list[dict[str, object]]) -> AgentOutput:
        return AgentOutput(
            role="ISSUE_COORDINATOR",
            summary="s",
            model="m",
            provider="offline",
            result={"subtasks": subtasks},
        )

    def sub(i: int, deps: list[int]) -> dict[str, object]:
        return {"id": i, "title": f"t{i}", "description": "d", "depends_on": deps}

    plan = parse_result(IssuePlan, output([sub(2, [1]), sub(1, []), sub(3, [])]))
    assert [s.id for s in plan.order()] == [1, 2, 3]  # dependencies first, else by id
    with pytest.raises(ResultError, match=r"ISSUE_COORDINATOR returned an unusable plan.*cycle"):
        parse_result(IssuePlan, output([sub(1, [2]), sub(2, [1])]))
    with pytest.raises(ResultError, match="depends on unknown or itself"):
        parse_result(IssuePlan, output([sub(1, [9])]))


def test_the_offline_script_is_deterministic_and_follows_the_issue() -> None:
    idea = "GitHub issue a/b#4: Crash on save\n\n- [ ] Guard the write\n- [ ] then add a test\n"
    triage = Triage.model_validate(triage_of(idea))
    assert (triage.type, triage.priority, triage.complexity) == ("bug", "high", "medium")
    assert triage.issue_labels() == ["type:bug", "priority:high", "complexity:medium"]
    plan = IssuePlan.model_validate(plan_of(idea))
    assert [(s.title, s.depends_on) for s in plan.subtasks] == [
        ("Guard the write", []),
        ("then add a test", [1]),
    ]
    assert plan_of(idea) == plan_of(idea)
    single = IssuePlan.model_validate(plan_of("GitHub issue a/b#5: Add dark mode\n\nPlease."))
    assert [s.title for s in single.subtasks] == ["Add dark mode"]
