"""The Messages API wire format: a reply as JSON or as server-sent events.

The offline model and the test/benchmark fakes all answer through these two
functions, so every one of them speaks exactly what the SDK parses from the
real API (event names, block indexes, `input_json_delta` for tool input).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

SSE_CONTENT_TYPE = "text/event-stream"

# Tool input is streamed in pieces, as the API does, so the SDK's partial-JSON
# accumulation is exercised rather than bypassed.
_JSON_CHUNK = 64


def message_json(message: dict[str, Any]) -> bytes:
    """A non-streamed reply body."""
    return json.dumps(message).encode()


def sse_event(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def message_sse(message: dict[str, Any]) -> Iterator[bytes]:
    """The events of a streamed reply, one `bytes` per event, in the API's order."""
    usage = message["usage"]
    start = {
        **message,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**usage, "output_tokens": 1},
    }
    yield sse_event("message_start", {"type": "message_start", "message": start})
    for index, block in enumerate(message["content"]):
        yield from _block_events(index, block)
    yield sse_event(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": {"output_tokens": usage["output_tokens"]},
        },
    )
    yield sse_event("message_stop", {"type": "message_stop"})


def error_sse(error_type: str, message: str) -> bytes:
    """An `error` event, as the API sends mid-stream (e.g. overloaded_error)."""
    return sse_event("error", {"type": "error", "error": {"type": error_type, "message": message}})


def error_json(error_type: str, message: str) -> bytes:
    return json.dumps({"type": "error", "error": {"type": error_type, "message": message}}).encode()


def _block_events(index: int, block: dict[str, Any]) -> Iterator[bytes]:
    if block["type"] == "text":
        yield sse_event(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": index,
                "content_block": {"type": "text", "text": ""},
            },
        )
        yield sse_event(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "text_delta", "text": block["text"]},
            },
        )
    elif block["type"] == "tool_use":
        empty = {**block, "input": {}}
        yield sse_event(
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": empty},
        )
        raw = json.dumps(block["input"])
        for i in range(0, len(raw), _JSON_CHUNK):
            yield sse_event(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": raw[i : i + _JSON_CHUNK]},
                },
            )
    else:
        raise ValueError(f"unsupported content block type {block['type']!r}")
    yield sse_event("content_block_stop", {"type": "content_block_stop", "index": index})
