"""One model request: streamed, with transient faults retried and the rest explained.

Retries live here, per request, and nowhere else: the SDK's own `max_retries`
is 0 and the agent task has no Prefect retries, because a task retry would
replay an agent's whole tool loop and multiply with this loop. Here a
transient fault (429, 529, 5xx, a dropped connection, a tier timeout) costs
one request again, honouring `retry-after`; anything else fails at once with
a message that says what to fix.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx2
from anthropic.types import Message

from tasks.common.retry import Backoff, Transient, retrying
from tasks.model.caching import Ttl
from tasks.model.endpoint import ModelCallError
from tasks.model.limits import pacer, request_slot

# Per request: up to five attempts, 0.5 s doubling to 30 s between them, and a
# server's retry-after honoured up to two minutes.
MODEL_BACKOFF = Backoff(max_attempts=5, base_delay_s=0.5, max_delay_s=30.0, max_retry_after_s=120.0)


class MalformedStream(RuntimeError):
    """An event of the streamed reply could not be parsed (a proxy or a network cut it)."""


@dataclass
class Fault:
    retryable: bool
    what: str
    retry_after_s: float | None = None


_RETRYABLE_STREAM_ERRORS = {"overloaded_error", "api_error", "rate_limit_error", "timeout_error"}


def classify(exc: BaseException, model: str, timeout_s: float) -> Fault:
    """Sort a failure into transient (retry) or permanent (say what to fix)."""
    if isinstance(exc, TimeoutError):
        return Fault(True, f"no complete reply within the tier timeout of {timeout_s:g}s")
    if isinstance(exc, MalformedStream):
        return Fault(True, f"malformed event in the stream ({exc})")
    if isinstance(exc, anthropic.APIConnectionError | httpx2.TransportError):
        return Fault(True, f"connection error ({type(exc).__name__})")
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        retry_after = _retry_after(exc.response.headers)
        if isinstance(exc, anthropic.RateLimitError):
            return Fault(True, "rate limited (429)", retry_after)
        if isinstance(exc, anthropic.InternalServerError):
            return Fault(True, f"server error ({status})", retry_after)
        if status == 200:  # an `error` event inside a streamed reply
            kind = _error_type(exc.body)
            return Fault(kind in _RETRYABLE_STREAM_ERRORS, f"error event in the stream ({kind})")
        if isinstance(exc, anthropic.AuthenticationError):
            return Fault(
                False,
                "the API rejected the key (401): set a valid ANTHROPIC_API_KEY or fix the "
                "AnthropicCredentials block",
            )
        if isinstance(exc, anthropic.PermissionDeniedError):
            return Fault(False, f"the key may not use {model} (403): check the key's workspace")
        if isinstance(exc, anthropic.NotFoundError):
            return Fault(False, f"model {model} not found (404): fix the team's tier_models")
        return Fault(False, f"the request was refused ({status}): {_error_message(exc)}")
    return Fault(False, f"{type(exc).__name__}: {exc}")


def _retry_after(headers: httpx2.Headers) -> float | None:
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            continue
    return None


def _error_type(body: object) -> str:
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            return str(error.get("type", "unknown"))
    return "unknown"


def _error_message(exc: anthropic.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message", exc.message))
    return exc.message


@dataclass
class PromptCaching:
    """Where a request's cache breakpoints go: three at most, of the API's four.

    The end of the shared system prefix (the team's: tools, operating rules,
    the idea), so every agent of a build reads one entry; the last block of
    the conversation's previous request, where that request wrote its entry
    (a turn may add more blocks than the API's 20-block lookback); and the
    last block of this request, so the next turn reads everything before it.
    """

    shared_blocks: int = 1  # the first N system blocks are the shared prefix
    shared_ttl: Ttl = "5m"
    history: int = 0  # how many messages the conversation's previous request had
    mark_last: bool = True


@dataclass
class ModelRequest:
    """One call's parameters; `caching` says where its cache breakpoints go (None: nowhere)."""

    model: str
    system: list[str]
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    max_tokens: int
    timeout_s: float
    # The team's tier ("haiku", ...): the fleet's rate limits are per tier; "" takes none.
    tier: str = ""
    caching: PromptCaching | None = None


def wire_params(request: ModelRequest) -> dict[str, Any]:
    """`system`, `messages` and `tools` as sent, with cache_control on the breakpoints.

    The request's own message list is never changed: breakpoints move every
    turn, and a marker left in the history would soon pass the API's limit.
    """
    system: list[dict[str, Any]] = [{"type": "text", "text": text} for text in request.system]
    messages = list(request.messages)
    plan = request.caching
    if plan is not None:
        last_shared = plan.shared_blocks - 1
        if 0 <= last_shared < len(system):
            system[last_shared] = _marked(system[last_shared], plan.shared_ttl)
        marks = {plan.history - 1} if 0 < plan.history < len(messages) else set()
        if plan.mark_last and messages:
            marks.add(len(messages) - 1)
        for i in marks:
            messages[i] = _with_marked_last_block(messages[i])
    return {"system": system, "messages": messages, "tools": request.tools}


def _marked(block: dict[str, Any], ttl: Ttl = "5m") -> dict[str, Any]:
    control: dict[str, str] = {"type": "ephemeral"}
    if ttl != "5m":
        control["ttl"] = ttl
    return {**block, "cache_control": control}


def _with_marked_last_block(message: dict[str, Any]) -> dict[str, Any]:
    content = message["content"]
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else list(content)
    for i in range(len(blocks) - 1, -1, -1):  # an empty text block cannot carry a marker
        if blocks[i].get("type") != "text" or blocks[i].get("text"):
            blocks[i] = _marked(blocks[i])
            break
    return {**message, "content": blocks}


async def stream_message(
    client: anthropic.AsyncAnthropic,
    request: ModelRequest,
    *,
    who: str,
    backoff: Backoff = MODEL_BACKOFF,
    on_attempt: Callable[[], None] | None = None,
) -> Message:
    """Stream one reply, retrying transient faults; `on_attempt()` counts each HTTP request."""

    async def attempt() -> Message:
        if on_attempt is not None:
            on_attempt()
        try:
            async with request_slot(request.tier):
                async with asyncio.timeout(request.timeout_s):
                    return await _stream_once(client, request)
        except Exception as exc:
            if isinstance(exc, anthropic.APIStatusError):
                pacer(request.tier).observe(exc.response.headers)
            fault = classify(exc, request.model, request.timeout_s)
            if not fault.retryable:
                raise ModelCallError(f"{who}: {fault.what}") from exc
            raise Transient(fault.what, fault.retry_after_s) from exc

    def exhausted(fault: Transient, attempts: int) -> ModelCallError:
        return ModelCallError(
            f"{who}: {fault.what}, still failing after {attempts} attempts; "
            "the run can be resumed later: finished agents are cached"
        )

    return await retrying(attempt, backoff=backoff, who=who, exhausted=exhausted)


async def _stream_once(client: anthropic.AsyncAnthropic, request: ModelRequest) -> Message:
    async with client.messages.stream(
        model=request.model,
        max_tokens=request.max_tokens,
        **wire_params(request),
    ) as stream:
        try:
            async for _event in stream:
                pass  # consuming events keeps the read timeout per chunk, not per reply
        except ValueError as exc:  # JSONDecodeError and pydantic's ValidationError
            raise MalformedStream(type(exc).__name__) from exc
        pacer(request.tier).observe(stream.response.headers)
        return await stream.get_final_message()
