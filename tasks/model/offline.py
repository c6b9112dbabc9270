"""The offline model: a scripted stand-in for Claude behind `httpx2.MockTransport`.

It answers the real Messages API (JSON or server-sent events, tool_use blocks),
so an offline run goes through the same SDK, streaming and tool-loop code as a
real one. Its script is that of a diligent agent: list the tree, read the
brief and every dependency's output, read several files (the deepest first),
write one document that cites what it read, submit. (The issue team's roles,
ISSUE_*, follow their own script in `tasks.issues.offline_script`.) Replies depend
only on the request (role, instructions, idea, upstream outputs), so they are
deterministic, and a change upstream changes what lands downstream.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2

from tasks.agents.prompts import BRIEF_PATH
from tasks.issues.offline_script import is_issue_role, issue_turn
from tasks.model.reading import (
    all_results,
    files_read,
    first_look,
    listing_of,
    pick_reads,
    text_of,
)
from tasks.model.wire import SSE_CONTENT_TYPE, error_json, message_json, message_sse

OFFLINE_BASE_URL = "http://offline-model.invalid"
OFFLINE_NOTICE = (
    "Written by agentmill's offline model: a placeholder, not a real design. "
    "Set ANTHROPIC_API_KEY (or an AnthropicCredentials block) to run the team on Claude."
)

_POINTER = re.compile(r"Role: (?P<role>[A-Z0-9_]+)\b.*?Dependencies: (?P<deps>[^.]*)\.", re.S)


# Every agent of the build script makes this many model requests: list and read
# its inputs, read files, write, submit.
REQUESTS_PER_AGENT = 4
# How many files of its view an agent reads before it writes (nested ones first).
FILES_READ = 4


def scripted_reply(request: dict[str, Any]) -> dict[str, Any]:
    """The assistant message the offline model sends for one Messages API request."""
    messages = request["messages"]
    match = _POINTER.search(text_of(messages[0]["content"]))
    if not match:
        content: list[dict[str, Any]] = [
            {"type": "text", "text": "Offline model: I only follow agentmill's pointer message."}
        ]
        return _message(request, content, "end_turn")
    role = match["role"]
    deps = [d.strip() for d in match["deps"].split(",") if d.strip() and d.strip() != "none"]
    step = sum(1 for m in messages if m["role"] == "assistant")
    if is_issue_role(role):  # the issue team has its own script (tasks/offline_issues.py)
        calls = issue_turn(role, deps, step, messages)
        content = [{"type": "text", "text": f"{role}, step {step}."}]
        content += [_tool_use(role, step, i, name, args) for i, (name, args) in enumerate(calls)]
        return _message(request, content, "tool_use")
    if step == 0:
        calls = first_look(deps)
        content = [{"type": "text", "text": "Looking at the tree, the brief and my inputs first."}]
        content += [_tool_use(role, step, i, name, args) for i, (name, args) in enumerate(calls)]
        return _message(request, content, "tool_use")
    if step == 1:
        picks = pick_reads(listing_of(messages), FILES_READ, role)
        content = [{"type": "text", "text": f"Reading {len(picks)} files of the tree."}]
        content += [
            _tool_use(role, step, i, "read_file", {"path": path}) for i, path in enumerate(picks)
        ]
        if not picks:  # nothing to read: look at the brief again (a turn is still a turn)
            content.append(_tool_use(role, step, 0, "read_file", {"path": BRIEF_PATH}))
        return _message(request, content, "tool_use")
    if step == 2:
        document = _document(role, _system_text(request), messages)
        path = f"docs/{role.lower().replace('_', '-')}.md"
        content = [
            {"type": "text", "text": f"Writing {path}."},
            _tool_use(role, step, 0, "write_file", {"path": path, "content": document}),
        ]
        return _message(request, content, "tool_use")
    summary = f"{role}: placeholder document written by the offline model."
    submit = {
        "summary": summary,
        "decisions": [f"{role} followed its instructions (offline placeholder)."],
        "next_steps": ["Run again with ANTHROPIC_API_KEY set for real work."],
        "warnings": ["offline model: placeholder output, not a real design"],
    }
    return _message(request, [_tool_use(role, step, 0, "submit", submit)], "tool_use")


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


def _message(request: dict[str, Any], content: list[dict[str, Any]], stop: str) -> dict[str, Any]:
    request_text = json.dumps(request, sort_keys=True)
    system_tokens = len(_system_text(request)) // 4
    first = not any(m["role"] == "assistant" for m in request["messages"])
    digest = hashlib.sha256(request_text.encode()).hexdigest()
    return {
        "id": f"msg_offline_{digest[:24]}",
        "type": "message",
        "role": "assistant",
        "model": request["model"],
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {
            "input_tokens": max(1, len(request_text) // 4 - system_tokens),
            "output_tokens": max(1, len(json.dumps(content)) // 4),
            # The system prompt carries cache_control: written once, then read.
            "cache_creation_input_tokens": system_tokens if first else 0,
            "cache_read_input_tokens": 0 if first else system_tokens,
        },
    }


def _tool_use(role: str, step: int, i: int, name: str, args: dict[str, Any]) -> dict[str, Any]:
    tool_id = hashlib.sha256(f"{role}/{step}/{i}".encode()).hexdigest()[:24]
    return {"type": "tool_use", "id": f"toolu_{tool_id}", "name": name, "input": args}


def _system_text(request: dict[str, Any]) -> str:
    return text_of(request.get("system", ""))


def handle(request: httpx2.Request) -> httpx2.Response:
    """The Messages API endpoint of the offline model, as an httpx2 transport handler."""
    if request.method != "POST" or not request.url.path.endswith("/v1/messages"):
        return httpx2.Response(
            404, content=error_json("not_found_error", f"no route {request.url.path}")
        )
    try:
        body = json.loads(request.content)
        body["model"], body["max_tokens"], body["messages"][0]
    except (ValueError, KeyError, IndexError, TypeError):
        return httpx2.Response(
            400,
            content=error_json("invalid_request_error", "model, max_tokens, messages required"),
            headers={"content-type": "application/json"},
        )
    reply = scripted_reply(body)
    if body.get("stream"):
        return httpx2.Response(
            200, headers={"content-type": SSE_CONTENT_TYPE}, content=_AsyncBytes(message_sse(reply))
        )
    return httpx2.Response(
        200, headers={"content-type": "application/json"}, content=message_json(reply)
    )


class _AsyncBytes(httpx2.AsyncByteStream):
    """Hands the SDK one SSE event per chunk, as a network stream would."""

    def __init__(self, events: Iterator[bytes]) -> None:
        self._events = list(events)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for event in self._events:
            yield event


def offline_transport() -> httpx2.MockTransport:
    return httpx2.MockTransport(handle)
