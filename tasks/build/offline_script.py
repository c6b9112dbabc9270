"""The offline model's script for build_app's team: a diligent agent that writes a document.

Each agent lists the tree, reads the brief and every dependency's output,
reads several files (the deepest first, then others that depend on the
role), writes one document that cites what it read, and submits. Replies
depend only on the request (role, instructions, idea, upstream outputs), so
they are deterministic, and a change upstream changes what lands downstream.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tasks.agents.prompts import BRIEF_PATH
from tasks.agents.scripted import (
    all_results,
    files_read,
    first_look,
    listing_of,
    not_an_agent,
    pick_reads,
    reply_with,
    turn_of,
)
from tasks.model.offline import system_text

OFFLINE_NOTICE = (
    "Written by agentmill's offline model: a placeholder, not a real design. "
    "Set ANTHROPIC_API_KEY (or an AnthropicCredentials block) to run the team on Claude."
)
# Every agent of this script makes this many model requests: look at the tree and its
# inputs, read files, write, submit.
REQUESTS_PER_AGENT = 4
# How many files of its view an agent reads before it writes.
FILES_READ = 4


def build_reply(request: dict[str, Any]) -> dict[str, Any]:
    """The assistant message the offline model sends for one request of build_app's team."""
    turn = turn_of(request)
    if turn is None:
        return not_an_agent(request)
    role = turn.role
    if turn.step == 0:
        calls = first_look(turn.deps)
        return reply_with(request, turn, "Looking at the tree, the brief and my inputs.", calls)
    if turn.step == 1:
        picks = pick_reads(listing_of(turn.messages), FILES_READ, role)
        # nothing to read: look at the brief again (a turn is still a turn)
        reads = [("read_file", {"path": path}) for path in picks or [BRIEF_PATH]]
        return reply_with(request, turn, f"Reading {len(picks)} files of the tree.", reads)
    if turn.step == 2:
        document = _document(role, system_text(request), turn.messages)
        path = f"docs/{role.lower().replace('_', '-')}.md"
        write = ("write_file", {"path": path, "content": document})
        return reply_with(request, turn, f"Writing {path}.", [write])
    submit = {
        "summary": f"{role}: placeholder document written by the offline model.",
        "decisions": [f"{role} followed its instructions (offline placeholder)."],
        "next_steps": ["Run again with ANTHROPIC_API_KEY set for real work."],
        "warnings": ["offline model: placeholder output, not a real design"],
    }
    return reply_with(request, turn, "Done.", [("submit", submit)])


def _document(role: str, system: str, messages: list[dict[str, Any]]) -> str:
    brief: dict[str, Any] = {}
    inputs: list[str] = []
    for result in all_results(messages):
        try:
            data = json.loads(result)
        except ValueError:
            continue
        if isinstance(data, dict) and "idea" in data:
            brief = data
        elif isinstance(data, dict) and "summary" in data:
            inputs.append(f"- {data.get('role', '?')}: {data['summary']}")
    read = [
        f"- `{path}`: {_first_line(text)}" for path, text in sorted(files_read(messages).items())
    ]
    instructions = hashlib.sha256(system.encode()).hexdigest()[:12]
    lines = [
        f"# {role}: {brief.get('idea', '(idea not read)')}",
        "",
        f"> {OFFLINE_NOTICE}",
        "",
        f"Role {role}; instructions digest {instructions}.",
        "",
        "## Inputs read",
        *(inputs or ["- none"]),
        "",
        "## Files read",
        *(read or ["- none"]),
        "",
    ]
    feedback = brief.get("reviewer_feedback") or []
    if feedback:
        lines += ["## Reviewer feedback addressed", *(f"- {comment}" for comment in feedback), ""]
    return "\n".join(lines)


def _first_line(text: str) -> str:
    line = next((line.strip() for line in text.splitlines() if line.strip()), "(empty)")
    return line[:80].replace("`", "'")
