"""Playing an agent offline: who is asked, what it has seen, and how it answers.

Both offline scripts (build_app's team and the issue team) behave like a
careful agent: list the tree, read the brief and each dependency's output,
then read several files before writing. These helpers parse agentmill's
pointer message, find those answers in the request's messages, and wrap
tool calls in a reply, so every reply follows from the request alone.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from tasks.agents.prompts import BRIEF_PATH, parse_pointer
from tasks.model import offline


def first_look(deps: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """What a careful agent asks for first: the tree, the brief, each dependency's output."""
    calls: list[tuple[str, dict[str, Any]]] = [
        ("list_files", {}),
        ("read_file", {"path": BRIEF_PATH}),
    ]
    return calls + [("read_output", {"role": d}) for d in deps]


def listing_of(messages: list[dict[str, Any]]) -> list[str]:
    """The paths of the first `list_files` result in the conversation."""
    for message in messages:
        content = message.get("content")
        if message.get("role") != "assistant" or not isinstance(content, list):
            continue
        ids = [
            b.get("id")
            for b in content
            if b.get("type") == "tool_use" and b.get("name") == "list_files"
        ]
        if ids:
            result = result_for(messages, ids[0])
            return [line for line in result.splitlines() if line and not line.startswith("(")]
    return []


def pick_reads(paths: list[str], limit: int, seed: str) -> list[str]:
    """Which files to read: the deepest ones (where the code lives), then others.

    The others start at a place that depends on `seed` (the role), so the
    agents of a team between them read the whole tree, and each one's choice
    is still fixed by its request. The brief is read already and `.tasks/`
    records are reached through read_output, so neither is picked.
    """
    candidates = sorted(p for p in paths if p != BRIEF_PATH and not p.startswith(".tasks/"))
    deepest = sorted(candidates, key=lambda p: (-p.count("/"), p))[: max(1, limit // 2)]
    others = [p for p in candidates if p not in deepest]
    if others:
        start = int(hashlib.sha256(seed.encode()).hexdigest(), 16) % len(others)
        others = others[start:] + others[:start]
    return (deepest + others)[:limit]


def files_read(messages: list[dict[str, Any]]) -> dict[str, str]:
    """{path: content} of every read_file call answered so far (the brief left out)."""
    read: dict[str, str] = {}
    for message in messages:
        content = message.get("content")
        if message.get("role") != "assistant" or not isinstance(content, list):
            continue
        for block in content:
            if block.get("type") == "tool_use" and block.get("name") == "read_file":
                path = str(block.get("input", {}).get("path", ""))
                if path and path != BRIEF_PATH:
                    read[path] = result_for(messages, str(block.get("id")))
    return read


def result_for(messages: list[dict[str, Any]], tool_use_id: str) -> str:
    for message in messages:
        content = message.get("content")
        if message.get("role") != "user" or not isinstance(content, list):
            continue
        for block in content:
            if isinstance(block, dict) and block.get("tool_use_id") == tool_use_id:
                return offline.text_of(block.get("content", ""))
    return ""


def all_results(messages: list[dict[str, Any]]) -> list[str]:
    """The text of every tool result in the conversation, in order."""
    out = []
    for message in messages:
        content = message.get("content")
        if message.get("role") != "user" or not isinstance(content, list):
            continue
        out += [
            offline.text_of(block.get("content", ""))
            for block in content
            if isinstance(block, dict) and block.get("type") == "tool_result"
        ]
    return out


@dataclass(frozen=True)
class Turn:
    """Where a scripted agent is: its role, its dependencies, how many replies it sent."""

    role: str
    deps: list[str]
    step: int
    messages: list[dict[str, Any]]


def turn_of(request: dict[str, Any]) -> Turn | None:
    """The agent this request comes from, or None if it is not agentmill's pointer message."""
    messages = request["messages"]
    pointer = parse_pointer(offline.text_of(messages[0]["content"]))
    if pointer is None:
        return None
    role, deps = pointer
    step = sum(1 for m in messages if m["role"] == "assistant")
    return Turn(role=role, deps=deps, step=step, messages=messages)


def reply_with(
    request: dict[str, Any], turn: Turn, text: str, calls: list[tuple[str, dict[str, Any]]]
) -> dict[str, Any]:
    """An assistant message: a line of text, then the tool calls, as Claude replies."""
    content: list[dict[str, Any]] = [{"type": "text", "text": text}]
    content += [offline.tool_use(turn.role, turn.step, i, n, a) for i, (n, a) in enumerate(calls)]
    return offline.message(request, content, "tool_use")


def not_an_agent(request: dict[str, Any]) -> dict[str, Any]:
    """The reply to a request that is not an agentmill agent's: say so and stop."""
    text = "Offline model: I only follow agentmill's pointer message."
    return offline.message(request, [{"type": "text", "text": text}], "end_turn")
