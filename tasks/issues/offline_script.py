"""The offline model's script for the issue team (roles named ISSUE_*).

Like the rest of the offline model it is deterministic: every answer follows
from the request alone (the issue text in the brief, the outputs read).

- Every role first lists the tree and reads the brief and its dependencies'
  outputs, then reads a few files (a code agent: its subtask's files first).
- Triage: keywords in the issue pick type and priority; the number of
  checklist items (`- [ ] ...`) picks the complexity.
- Coordinator: one subtask per checklist item, else one for the whole issue;
  an item starting with "then" depends on the item before it.
- Code agents: a small placeholder module and a test for it per subtask
  (`agentmill_offline/issue_<N>_<k>.py`, `tests/test_agentmill_issue_<N>_<k>.py`).
  An issue whose text holds `[offline: sloppy]` gets a first draft with an
  unused import, so a review round with fixes can be exercised offline.
- Reviewer: 100 minus a penalty per finding of the checks (30 an error, 10 a
  warning, 2 a note); it approves when there is no error or warning and asks
  for a fix per finding otherwise.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tasks.agents.prompts import BRIEF_PATH
from tasks.agents.scripted import (
    first_look,
    listing_of,
    not_an_agent,
    pick_reads,
    reply_with,
    turn_of,
)

OFFLINE_CODE_NOTICE = "Placeholder written by agentmill's offline model, not a real change."
SLOPPY_DIRECTIVE = "[offline: sloppy]"

_CHECKLIST = re.compile(r"^\s*[-*] \[[ xX]\] (.+)$", re.M)
_ISSUE_NUMBER = re.compile(r"#(\d+)")
_CODE_ROLE = re.compile(r"^ISSUE_CODE_(\d+)(_FIX)?$")
_PENALTY = {"error": 30, "warning": 10, "info": 2}
FILES_READ = 3  # files of the repository each issue agent reads before it answers


def issue_reply(request: dict[str, Any]) -> dict[str, Any]:
    """The assistant message the offline model sends for one request of the issue team."""
    turn = turn_of(request)
    if turn is None:
        return not_an_agent(request)
    calls = issue_turn(turn.role, turn.deps, turn.step, turn.messages)
    return reply_with(request, turn, f"{turn.role}, step {turn.step}.", calls)


def issue_turn(
    role: str, deps: list[str], step: int, messages: list[dict[str, Any]]
) -> list[tuple[str, dict[str, Any]]]:
    """The tool calls (name, input) of the role's next turn; the caller wraps them in a reply.

    Every role looks first (the tree, the brief, its dependencies' outputs),
    then reads files of the repository (code agents: the ones their subtask
    names, then the deepest), and only then writes or answers.
    """
    if step == 0:
        return first_look(deps)
    brief, outputs = _reads(messages)
    idea = str(brief.get("idea", ""))
    match = _CODE_ROLE.match(role)
    if step == 1:
        wanted: list[str] = []
        if match:
            subtask = _subtask(outputs, int(match.group(1)))
            wanted = [str(f) for f in subtask.get("files", [])]
        listing = listing_of(messages)
        picks = [p for p in wanted if p in listing]
        picks += [p for p in pick_reads(listing, FILES_READ, role) if p not in picks]
        return [("read_file", {"path": p}) for p in picks[:FILES_READ]] or [
            ("read_file", {"path": BRIEF_PATH})
        ]
    if role == "ISSUE_TRIAGE":
        return [("submit", _submit(f"{role}: issue classified.", triage_of(idea)))]
    if role == "ISSUE_COORDINATOR":
        plan = plan_of(idea)
        summary = f"{role}: {len(plan['subtasks'])} subtask(s)."
        return [("submit", _submit(summary, plan))]
    if role.startswith("ISSUE_REVIEW"):
        checks = next((o for r, o in outputs.items() if r.startswith("ISSUE_CHECKS")), {})
        verdict = verdict_of(checks.get("result", {}).get("findings", []))
        decision = "approved" if verdict["approve"] else "changes requested"
        summary = f"{role}: score {verdict['score']}, {decision}."
        return [("submit", _submit(summary, verdict))]
    if match:
        subtask_id, fixing = int(match.group(1)), bool(match.group(2))
        subtask = _subtask(outputs, subtask_id)
        if step == 2:
            sloppy = SLOPPY_DIRECTIVE in idea and not fixing
            files = code_files(_issue_number(idea), subtask, sloppy=sloppy)
            return [("write_file", {"path": p, "content": c}) for p, c in files.items()]
        what = "fixed the review's findings" if fixing else "implemented"
        return [("submit", _submit(f"{role}: {what} subtask {subtask_id}: {subtask['title']}."))]
    return [("submit", _submit(f"{role}: nothing scripted for this role offline."))]


def _subtask(outputs: dict[str, dict[str, Any]], subtask_id: int) -> dict[str, Any]:
    """The coordinator's subtask `subtask_id`, or a stand-in when the plan was not read."""
    plan = outputs.get("ISSUE_COORDINATOR", {}).get("result", {})
    found = next((s for s in plan.get("subtasks", []) if s.get("id") == subtask_id), None)
    return found or {"id": subtask_id, "title": f"subtask {subtask_id}", "depends_on": []}


def _submit(summary: str, result: dict[str, Any] | None = None) -> dict[str, Any]:
    args: dict[str, Any] = {
        "summary": summary,
        "decisions": ["offline model: scripted, deterministic answer"],
        "next_steps": ["Run again with ANTHROPIC_API_KEY set for real work."],
        "warnings": ["offline model: placeholder output, not a real change"],
    }
    if result is not None:
        args["result"] = result
    return args


def _reads(messages: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The brief and the outputs read so far, from every tool result in the conversation."""
    brief: dict[str, Any] = {}
    outputs: dict[str, dict[str, Any]] = {}
    for message in messages:
        content = message.get("content")
        if message.get("role") != "user" or not isinstance(content, list):
            continue
        for block in content:
            if not isinstance(block, dict) or block.get("type") != "tool_result":
                continue
            text = block.get("content", "")
            if isinstance(text, list):
                text = "".join(b.get("text", "") for b in text if isinstance(b, dict))
            try:
                data = json.loads(text)
            except (TypeError, ValueError):
                continue
            if isinstance(data, dict) and "idea" in data:
                brief = data
            elif isinstance(data, dict) and "role" in data and "summary" in data:
                outputs[str(data["role"])] = data
    return brief, outputs


def _issue_number(idea: str) -> int:
    match = _ISSUE_NUMBER.search(idea)
    return int(match.group(1)) if match else 0


def triage_of(idea: str) -> dict[str, Any]:
    text = idea.lower()
    kind = "feature"
    for candidate, words in (
        ("bug", r"\b(bug|fix|error|crash|broken|fails?|wrong)\b"),
        ("docs", r"\b(docs?|documentation|readme)\b"),
        ("test", r"\b(tests?|coverage)\b"),
        ("refactor", r"\b(refactor|clean ?up|simplify)\b"),
    ):
        if re.search(words, text):
            kind = candidate
            break
    priority = "medium"
    if re.search(r"\b(urgent|crash|security|data loss|outage)\b", text):
        priority = "high"
    elif re.search(r"\b(minor|typo|nice to have|cosmetic)\b", text):
        priority = "low"
    items = len(_CHECKLIST.findall(idea))
    complexity = "large" if items >= 3 else "medium" if items == 2 else "small"
    labels = [f"type:{kind}", f"priority:{priority}", f"complexity:{complexity}"]
    if "security" in text:
        labels.append("security")
    return {
        "type": kind,
        "priority": priority,
        "complexity": complexity,
        "labels": labels,
        "rationale": f"offline keyword triage; {items} checklist item(s)",
    }


def plan_of(idea: str) -> dict[str, Any]:
    items = [item.strip() for item in _CHECKLIST.findall(idea)][:6]
    title = idea.split("\n", 1)[0].split(": ", 1)[-1].strip() or "the issue"
    if not items:
        items = [title]
    subtasks = []
    for i, item in enumerate(items, start=1):
        depends = [i - 1] if i > 1 and item.lower().startswith("then ") else []
        subtasks.append(
            {
                "id": i,
                "title": item,
                "description": f"Implement: {item}",
                "depends_on": depends,
                "files": [],
            }
        )
    return {"subtasks": subtasks}


def code_files(issue: int, subtask: dict[str, Any], *, sloppy: bool) -> dict[str, str]:
    """A placeholder module for the subtask and a test of it, clean unless `sloppy`."""
    k = int(subtask["id"])
    module = f"issue_{issue}_{k}"
    title = str(subtask.get("title", ""))
    depends = [f"issue_{issue}_{d}" for d in subtask.get("depends_on", [])]
    slip = (
        "import os  # an unused import: the offline model's deliberate slip\n\n" if sloppy else ""
    )
    code = (
        f'"""Issue #{issue}, subtask {k}. {OFFLINE_CODE_NOTICE}"""\n\n'
        f"{slip}"
        f"SUBTASK = {title!r}\n"
        f"BUILDS_ON: list[str] = {depends!r}\n\n\n"
        "def describe() -> str:\n"
        '    """Say which subtask this placeholder stands for."""\n'
        "    return SUBTASK\n"
    )
    test = (
        f'"""Tests written with issue #{issue}, subtask {k} (offline placeholder)."""\n\n'
        f"from agentmill_offline.{module} import describe\n\n\n"
        "def test_describe_names_the_subtask() -> None:\n"
        f"    assert describe() == {title!r}\n"
    )
    return {
        f"agentmill_offline/{module}.py": code,
        f"tests/test_agentmill_{module}.py": test,
    }


def verdict_of(findings: list[dict[str, Any]]) -> dict[str, Any]:
    penalty = sum(_PENALTY.get(str(f.get("severity")), 0) for f in findings)
    serious = [f for f in findings if f.get("severity") in ("error", "warning")]
    fixes = [
        f"{f.get('tool')}: {f.get('path') or '-'}:{f.get('line') or 0} {f.get('code') or ''} "
        f"{f.get('message', '')}".strip()
        for f in serious[:20]
    ]
    return {
        "score": max(0, 100 - penalty),
        "approve": not serious,
        "fixes": fixes,
        "notes": f"offline review of {len(findings)} finding(s)",
    }
