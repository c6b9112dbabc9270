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

from tasks.model.caching import CacheRuleError, PromptCache, charge, prompt_tokens
from tasks.model.endpoint import OfflineScript
from tasks.model.wire import SSE_CONTENT_TYPE, error_json, message_json, message_sse

OFFLINE_BASE_URL = "http://offline-model.invalid"


def message(request: dict[str, Any], content: list[dict[str, Any]], stop: str) -> dict[str, Any]:
    """An assistant message for `request`; its usage counts the prompt as uncached input.

    Whoever serves the reply (the offline transport, the fake API) charges it
    through `tasks.model.caching`, which moves prompt tokens to cache reads
    and writes as the API would. A text reply longer than the request's
    `max_tokens` is cut there, with stop reason `max_tokens`, as the API does.
    """
    request_text = json.dumps(request, sort_keys=True)
    digest = hashlib.sha256(request_text.encode()).hexdigest()
    output_tokens = max(1, len(json.dumps(content)) // 4)
    limit = int(request.get("max_tokens") or output_tokens)
    if output_tokens > limit and all(b.get("type") == "text" for b in content):
        text = "".join(b["text"] for b in content)[: 4 * limit]
        content, stop, output_tokens = [{"type": "text", "text": text}], "max_tokens", limit
    return {
        "id": f"msg_offline_{digest[:24]}",
        "type": "message",
        "role": "assistant",
        "model": request["model"],
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {
            "input_tokens": prompt_tokens(request),
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
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
    """The Messages API endpoint of the offline model, as an httpx2 transport handler.

    It keeps a prompt cache of its own, for the life of the transport (one
    pooled client, so one per process and event loop): a run's requests
    write and read it as they would the API's, so the offline model's cache
    figures are the real API's for the same run, concurrency included. A
    fresh process starts with an empty cache, as a run after the TTL would.
    """
    cache = PromptCache()

    def handle(request: httpx2.Request) -> httpx2.Response:
        if request.method != "POST" or not request.url.path.endswith("/v1/messages"):
            return httpx2.Response(
                404, content=error_json("not_found_error", f"no route {request.url.path}")
            )
        try:
            body = json.loads(request.content)
            body["model"], body["max_tokens"], body["messages"][0]
        except (ValueError, KeyError, IndexError, TypeError):
            return _bad_request("model, max_tokens, messages required")
        try:
            reply, served = charge(cache, body, script(body))
        except CacheRuleError as exc:
            return _bad_request(str(exc))
        served.begin_response()  # no latency: the response begins at once
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


def _bad_request(message: str) -> httpx2.Response:
    return httpx2.Response(
        400,
        content=error_json("invalid_request_error", message),
        headers={"content-type": "application/json"},
    )


class _AsyncBytes(httpx2.AsyncByteStream):
    """Hands the SDK one SSE event per chunk, as a network stream would."""

    def __init__(self, events: Iterator[bytes]) -> None:
        self._events = list(events)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for event in self._events:
            yield event


def offline_transport(script: OfflineScript) -> httpx2.MockTransport:
    return httpx2.MockTransport(handler(script))
