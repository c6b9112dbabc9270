"""The offline model: a scripted stand-in for Claude behind `httpx2.MockTransport`.

It answers the real Messages API (JSON or server-sent events, tool_use
blocks), so an offline run goes through the same SDK, streaming and
tool-loop code as a real one. What it says comes from a script, a function
from the request to the assistant message, which the pipeline chooses
(build_app's team and the issue team have their own, in
`tasks.build.offline_script` and `tasks.issues.offline_script`). Scripts
answer from the request alone, so replies are deterministic, and a change
upstream changes what lands downstream.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx2

from tasks.model.endpoint import OfflineScript
from tasks.model.wire import SSE_CONTENT_TYPE, error_json, message_json, message_sse

OFFLINE_BASE_URL = "http://offline-model.invalid"


def message(request: dict[str, Any], content: list[dict[str, Any]], stop: str) -> dict[str, Any]:
    """An assistant message for `request`, with usage counted the way the API counts it."""
    request_text = json.dumps(request, sort_keys=True)
    system_tokens = len(system_text(request)) // 4
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


def tool_use(role: str, step: int, i: int, name: str, args: dict[str, Any]) -> dict[str, Any]:
    """A tool_use block whose id is fixed by (role, step, i): replies stay deterministic."""
    tool_id = hashlib.sha256(f"{role}/{step}/{i}".encode()).hexdigest()[:24]
    return {"type": "tool_use", "id": f"toolu_{tool_id}", "name": name, "input": args}


def text_of(content: Any) -> str:
    """The text of a message's content, whether a string or a list of blocks."""
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") for b in content if isinstance(b, dict))


def system_text(request: dict[str, Any]) -> str:
    return text_of(request.get("system", ""))


def generic_reply(request: dict[str, Any]) -> dict[str, Any]:
    """What the offline model says when no pipeline gave it a script: that it has none."""
    text = "Offline model: this run gave me no script, so I cannot play an agent."
    return message(request, [{"type": "text", "text": text}], "end_turn")


def handler(script: OfflineScript) -> Callable[[httpx2.Request], httpx2.Response]:
    """The Messages API endpoint of the offline model, as an httpx2 transport handler."""

    def handle(request: httpx2.Request) -> httpx2.Response:
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
        reply = script(body)
        if body.get("stream"):
            return httpx2.Response(
                200,
                headers={"content-type": SSE_CONTENT_TYPE},
                content=_AsyncBytes(message_sse(reply)),
            )
        return httpx2.Response(
            200, headers={"content-type": "application/json"}, content=message_json(reply)
        )

    return handle


class _AsyncBytes(httpx2.AsyncByteStream):
    """Hands the SDK one SSE event per chunk, as a network stream would."""

    def __init__(self, events: Iterator[bytes]) -> None:
        self._events = list(events)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for event in self._events:
            yield event


def offline_transport(script: OfflineScript) -> httpx2.MockTransport:
    return httpx2.MockTransport(handler(script))
