"""The model layer: one pooled client per process, streamed calls, retries in one place.

Retries live here, per request, and nowhere else: the SDK's own `max_retries`
is 0 and the agent task has no Prefect retries, because a task retry would
replay an agent's whole tool loop and multiply with this loop. Here a
transient fault (429, 529, 5xx, a dropped connection, a tier timeout) costs
one request again, honouring `retry-after`; anything else fails at once with
a message that says what to fix.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal

import anthropic
import httpx2
from anthropic.types import Message
from pydantic import BaseModel, SecretStr

from tasks.common.logs import run_logger
from tasks.model.offline import OFFLINE_BASE_URL, offline_transport

ProviderChoice = Literal["auto", "anthropic", "offline"]
Provider = Literal["anthropic", "offline"]


class ModelCallError(RuntimeError):
    """A model request failed for good; the message says what to do about it."""


class MalformedStream(RuntimeError):
    """An event of the streamed reply could not be parsed (a proxy or a network cut it)."""


@dataclass(frozen=True)
class Endpoint:
    """Where model requests go. `repr` never shows the key (SecretStr)."""

    provider: Provider
    base_url: str | None = None
    api_key: SecretStr | None = field(default=None, compare=False)


_ENDPOINT: ContextVar[Endpoint | None] = ContextVar("agentmill_endpoint", default=None)


def resolve_endpoint(choice: ProviderChoice, credentials_block: str | None = None) -> Endpoint:
    """Pick the provider: a key from the named block or ANTHROPIC_API_KEY means Claude.

    Loads the block synchronously: call it from sync code (or a sync flow); async
    code awaits `aresolve_endpoint`, because Prefect's `Block.load` returns a
    coroutine inside an async flow.
    """
    creds = None
    if credentials_block:
        from blocks.credentials import AnthropicCredentials

        try:
            creds = AnthropicCredentials.load(credentials_block, _sync=True)  # type: ignore[call-arg]
        except ValueError as exc:
            raise _no_block(credentials_block) from exc
    return _endpoint(choice, creds)


async def aresolve_endpoint(
    choice: ProviderChoice, credentials_block: str | None = None
) -> Endpoint:
    """`resolve_endpoint` for async code: the credentials block is loaded with `aload`."""
    creds = None
    if credentials_block:
        from blocks.credentials import AnthropicCredentials

        try:
            creds = await AnthropicCredentials.aload(credentials_block)
        except ValueError as exc:
            raise _no_block(credentials_block) from exc
    return _endpoint(choice, creds)


def _no_block(name: str) -> ModelCallError:
    return ModelCallError(
        f"no AnthropicCredentials block named {name!r}; create it in the "
        "Prefect UI (Blocks) or with AnthropicCredentials(api_key=...).save(name)"
    )


def _endpoint(choice: ProviderChoice, creds: Any) -> Endpoint:
    key: str | None = None
    base_url = os.environ.get("ANTHROPIC_BASE_URL") or None
    if creds is not None:
        key = creds.api_key.get_secret_value()
        base_url = creds.base_url or base_url
    else:
        key = os.environ.get("ANTHROPIC_API_KEY") or None
    if choice == "offline" or (choice == "auto" and not key):
        return Endpoint(provider="offline")
    if not key:
        raise ModelCallError(
            "provider 'anthropic' needs an API key: set ANTHROPIC_API_KEY, or pass "
            "--credentials NAME for an AnthropicCredentials block, or use --provider offline"
        )
    return Endpoint(provider="anthropic", base_url=base_url, api_key=SecretStr(key))


@contextmanager
def use_endpoint(endpoint: Endpoint) -> Iterator[None]:
    """Make `endpoint` the one agent tasks in this context talk to."""
    token = _ENDPOINT.set(endpoint)
    try:
        yield
    finally:
        _ENDPOINT.reset(token)


def current_endpoint(provider: Provider) -> Endpoint:
    endpoint = _ENDPOINT.get()
    if endpoint is not None and endpoint.provider == provider:
        return endpoint
    return resolve_endpoint(provider)


# One client per (event loop, endpoint): a pooled httpx2 client belongs to the
# loop it first ran on, and a process may run several builds one after another.
_CLIENTS: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, str | None, str], anthropic.AsyncAnthropic]
] = weakref.WeakKeyDictionary()


def get_client(endpoint: Endpoint) -> anthropic.AsyncAnthropic:
    loop = asyncio.get_running_loop()
    key_id = ""
    if endpoint.api_key is not None:
        key_id = hashlib.sha256(endpoint.api_key.get_secret_value().encode()).hexdigest()
    slot = (endpoint.provider, endpoint.base_url, key_id)
    clients = _CLIENTS.setdefault(loop, {})
    if slot not in clients:
        clients[slot] = _new_client(endpoint)
    return clients[slot]


def _new_client(endpoint: Endpoint) -> anthropic.AsyncAnthropic:
    if endpoint.provider == "offline":
        return anthropic.AsyncAnthropic(
            api_key="offline-model-no-key",
            base_url=OFFLINE_BASE_URL,
            max_retries=0,
            http_client=httpx2.AsyncClient(transport=offline_transport()),
        )
    assert endpoint.api_key is not None
    return anthropic.AsyncAnthropic(
        api_key=endpoint.api_key.get_secret_value(),
        base_url=endpoint.base_url,
        max_retries=0,  # retries happen in `stream_message`, once
        http_client=httpx2.AsyncClient(
            limits=httpx2.Limits(max_connections=100, max_keepalive_connections=50),
            timeout=httpx2.Timeout(600.0, connect=10.0),
        ),
    )


# --- pricing ---------------------------------------------------------------


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float
    cache_write: float
    cache_read: float


_OPUS_4_5 = Price(5.0, 25.0, 6.25, 0.50)
PRICES: dict[str, Price] = {
    "claude-opus-5-5": Price(4.0, 20.0, 5.0, 0.20),
    "claude-sonnet-5-5": Price(2.0, 10.0, 2.5, 0.10),
    "claude-haiku-5-5": Price(0.10, 0.50, 0.125, 0.01),
    "claude-opus-5": _OPUS_4_5,
    "claude-opus-4-8": _OPUS_4_5,
    "claude-opus-4-7": _OPUS_4_5,
    "claude-opus-4-6": _OPUS_4_5,
    "claude-opus-4-5": _OPUS_4_5,
    "claude-sonnet-5": Price(2.0, 10.0, 2.5, 0.20),
    "claude-sonnet-4-6": Price(3.0, 15.0, 3.75, 0.30),
    "claude-sonnet-4-5": Price(3.0, 15.0, 3.75, 0.30),
    "claude-haiku-4-5": Price(1.0, 5.0, 1.25, 0.10),
}


class Usage(BaseModel):
    """Tokens and requests of one agent run (or a sum of them)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    requests: int = 0

    @property
    def total_tokens(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_read_tokens
            + self.cache_write_tokens
        )

    def add_message(self, message: Message) -> None:
        u = message.usage
        self.input_tokens += u.input_tokens
        self.output_tokens += u.output_tokens
        self.cache_read_tokens += u.cache_read_input_tokens or 0
        self.cache_write_tokens += u.cache_creation_input_tokens or 0


def cost_usd(model: str, usage: Usage, provider: Provider) -> float:
    """What the usage cost; the offline model costs nothing, an unpriced model logs a warning."""
    if provider == "offline":
        return 0.0
    price = PRICES.get(model)
    if price is None:
        run_logger("agentmill.llm").warning(
            "no price known for model %s; its cost is reported as 0", model
        )
        return 0.0
    return (
        usage.input_tokens * price.input
        + usage.output_tokens * price.output
        + usage.cache_write_tokens * price.cache_write
        + usage.cache_read_tokens * price.cache_read
    ) / 1_000_000


# --- requests and retries --------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts per request, and how long to wait between them."""

    max_attempts: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    max_retry_after_s: float = 120.0


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
class ModelRequest:
    """One call's parameters; `system` is cached (cache_control) across the tool loop."""

    model: str
    system: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    max_tokens: int
    timeout_s: float


async def stream_message(
    client: anthropic.AsyncAnthropic,
    request: ModelRequest,
    *,
    policy: RetryPolicy,
    who: str,
    on_attempt: Any = None,
) -> Message:
    """Stream one reply, retrying transient faults; `on_attempt()` counts each HTTP request."""
    for attempt in range(1, policy.max_attempts + 1):
        if on_attempt is not None:
            on_attempt()
        try:
            async with asyncio.timeout(request.timeout_s):
                return await _stream_once(client, request)
        except Exception as exc:
            fault = classify(exc, request.model, request.timeout_s)
            if not fault.retryable:
                raise ModelCallError(f"{who}: {fault.what}") from exc
            if attempt == policy.max_attempts:
                raise ModelCallError(
                    f"{who}: {fault.what}, still failing after {attempt} attempts; "
                    "the run can be resumed later: finished agents are cached"
                ) from exc
            delay = _delay(policy, attempt, fault.retry_after_s)
            run_logger("agentmill.llm").warning(
                "%s: %s; retrying in %.2fs (attempt %d of %d)",
                who, fault.what, delay, attempt + 1, policy.max_attempts,
            )  # fmt: skip
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def _delay(policy: RetryPolicy, attempt: int, retry_after: float | None) -> float:
    if retry_after is not None:
        return min(retry_after, policy.max_retry_after_s)
    backoff = min(policy.base_delay_s * 2.0 ** (attempt - 1), policy.max_delay_s)
    return backoff * (0.75 + 0.5 * random.random())  # noqa: S311 - jitter, not crypto


async def _stream_once(client: anthropic.AsyncAnthropic, request: ModelRequest) -> Message:
    system = [{"type": "text", "text": request.system, "cache_control": {"type": "ephemeral"}}]
    async with client.messages.stream(
        model=request.model,
        system=system,  # type: ignore[arg-type]
        messages=request.messages,  # type: ignore[arg-type]
        tools=request.tools,  # type: ignore[arg-type]
        max_tokens=request.max_tokens,
    ) as stream:
        try:
            async for _event in stream:
                pass  # consuming events keeps the read timeout per chunk, not per reply
        except ValueError as exc:  # JSONDecodeError and pydantic's ValidationError
            raise MalformedStream(type(exc).__name__) from exc
        return await stream.get_final_message()
