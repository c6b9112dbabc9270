"""A fake Anthropic Messages API on loopback: real HTTP (uvicorn), real SSE framing.

By default it answers like the offline model (the same scripts, build_app's
team's and the issue team's), so a run against it behaves like an offline
run but goes over the network through the SDK's real transport. Tests
inject faults, replace the script, add latency, and read back every request
it saw.

Its prompt cache follows the API's rules (`tasks.model.caching`): per API
key and model, the 400s for broken breakpoints, the minimum length, the
lookback and the TTLs (`prompt_cache.advance(seconds)` moves its clock), and
an entry readable only once the response that wrote it has begun, i.e.
after the fake's latency for that request.

The benchmark harness shares one fake between runs: a base URL of
`{base_url}/runs/{tag}` tags each request with its run, and the fake keeps,
per request, the model tier, the step of the agent's loop, the latency it
served and the tokens it reported, plus the in-flight peak per (tag, tier).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tasks.build.offline_script import build_reply
from tasks.issues.offline_script import issue_reply
from tasks.model.caching import CacheRuleError, PromptCache, Served, charge
from tasks.model.warmup import is_warm_up
from tasks.model.wire import SSE_CONTENT_TYPE, error_json, error_sse, message_json, message_sse
from tasks.testing.loopback import LoopbackServer

Script = Callable[[dict[str, Any]], dict[str, Any]]
Latency = Callable[[dict[str, Any]], float]

_ROLE = re.compile(r"Role: ([A-Z0-9_]+)")
_STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "api_error",
    529: "overloaded_error",
}


@dataclass
class Fault:
    """What to do instead of (or on the way to) a normal reply.

    kind: "status" (an error response), "reset" (drop the connection mid-stream),
    "error_event" (an `error` event inside a 200 stream), "slow" (wait `delay_s`
    before answering), "malformed" (a broken event in the stream).
    """

    kind: str = "status"
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    message: str = "injected fault"
    error_type: str | None = None
    delay_s: float = 0.0


@dataclass
class SeenRequest:
    role: str | None
    body: dict[str, Any]
    headers: dict[str, str]
    at: float
    fault: str | None
    tag: str | None = None
    tier: str = "other"
    step: int = 0
    latency_s: float = 0.0  # the delay the fake chose for this reply
    served_s: float = 0.0  # the delay it actually waited (event-loop lag included)
    input_tokens: int = 0  # input + cache read + cache write, as the reply's usage says
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    warm_up: bool = False  # agentmill's one-small-request warm-up of a shared prefix


def team_reply(body: dict[str, Any]) -> dict[str, Any]:
    """The offline model's answer for either team: the issue team's roles are ISSUE_*."""
    role = role_of(body) or ""
    return issue_reply(body) if role.startswith("ISSUE_") else build_reply(body)


def tier_of(model: str) -> str:
    """The tier a model id belongs to ("opus", "sonnet", "haiku"), else "other"."""
    return next((t for t in ("opus", "sonnet", "haiku") if t in model), "other")


def step_of(body: dict[str, Any]) -> int:
    """Which request of the agent's loop this is: 0 for the first, 1 after one reply, ..."""
    return sum(1 for m in body.get("messages") or [] if m.get("role") == "assistant")


def role_of(body: dict[str, Any]) -> str | None:
    messages = body.get("messages") or [{}]
    content = messages[0].get("content", "")
    text = content if isinstance(content, str) else json.dumps(content)
    match = _ROLE.search(text)
    return match.group(1) if match else None


class FakeMessagesAPI(LoopbackServer):
    """Start with `with FakeMessagesAPI() as api:`; `api.base_url` goes to the SDK."""

    name = "fake Messages API"

    def __init__(
        self,
        script: Script = team_reply,
        latency: Latency | None = None,
        requests_per_window: dict[str, int] | None = None,
        window_s: float = 60.0,
    ) -> None:
        self.script = script
        self.latency = latency
        # Per model tier, as Anthropic limits per model family: at most this many requests
        # accepted in any `window_s` (60 s: requests per minute); past it, 429.
        self.requests_per_window = dict(requests_per_window or {})
        self.window_s = window_s
        self._accepted: defaultdict[str, deque[float]] = defaultdict(deque)
        self.rate_limited = 0  # 429s answered for the limit (not injected faults)
        self.requests: list[SeenRequest] = []
        # Prompt caching by the API's rules, per workspace (API key) and model;
        # `prompt_cache.advance(301)` makes 5-minute entries expire.
        self.prompt_cache = PromptCache()
        self._faults: list[Fault] = []
        self._role_faults: dict[str, list[Fault]] = {}
        self._lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.in_flight_by_tier: Counter[tuple[str | None, str]] = Counter()
        self.max_in_flight_by_tier: Counter[tuple[str | None, str]] = Counter()
        super().__init__(
            [
                Route("/v1/messages", self._messages, methods=["POST"]),
                Route("/runs/{tag}/v1/messages", self._messages, methods=["POST"]),
            ]
        )

    # -- control -------------------------------------------------------------

    def fail_next(self, *faults: Fault) -> None:
        """The next requests (any role) get these faults, in order."""
        with self._lock:
            self._faults.extend(faults)

    def fail_role(self, role: str, *faults: Fault) -> None:
        with self._lock:
            self._role_faults.setdefault(role, []).extend(faults)

    def requests_by_role(self, tag: str | None = None) -> Counter[str]:
        return Counter(r.role or "?" for r in self.requests_for(tag))

    def tagged_url(self, tag: str) -> str:
        """A base URL whose requests the fake files under `tag`."""
        return f"{self.base_url}/runs/{tag}"

    def requests_for(self, tag: str | None = None) -> list[SeenRequest]:
        """Requests of one tagged run; all requests when `tag` is None."""
        return [r for r in list(self.requests) if tag is None or r.tag == tag]

    def peak_in_flight(self, tag: str | None = None) -> dict[str, int]:
        """The most requests of each tier the fake held at once (for one tag, or any)."""
        peaks: defaultdict[str, int] = defaultdict(int)
        for (seen_tag, tier), peak in self.max_in_flight_by_tier.items():
            if tag is None or seen_tag == tag:
                peaks[tier] = max(peaks[tier], peak)
        return dict(peaks)

    def delay_for(self, body: dict[str, Any], tag: str | None) -> float:
        """Seconds to hold this reply; subclasses decide per tag (the benchmark does)."""
        return self.latency(body) if self.latency else 0.0

    # -- the endpoint ----------------------------------------------------------

    def _next_fault(self, role: str | None) -> Fault | None:
        with self._lock:
            if role and self._role_faults.get(role):
                return self._role_faults[role].pop(0)
            if self._faults:
                return self._faults.pop(0)
        return None

    async def _messages(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            return _error(400, "body is not JSON")
        role = role_of(body)
        tag = request.path_params.get("tag")
        fault = self._next_fault(role)
        seen = SeenRequest(
            role,
            body,
            dict(request.headers),
            time.monotonic(),
            fault.kind if fault else None,
            tag=tag,
            tier=tier_of(str(body.get("model", ""))),
            step=step_of(body),
            warm_up=is_warm_up(body),
        )
        self.requests.append(seen)
        limit_headers, over = self._take_rate_slot(seen.tier, seen.at)
        if over:
            self.rate_limited += 1
            seen.fault = "rate-limited"
            return Response(
                error_json("rate_limit_error", "Number of request tokens has exceeded your "
                           "per-minute rate limit (fake)"),
                status_code=429,
                headers={**limit_headers, "content-type": "application/json"},
            )  # fmt: skip
        if fault and fault.kind == "status":
            error_type = fault.error_type or _STATUS_TYPES.get(fault.status, "api_error")
            return Response(
                error_json(error_type, fault.message),
                status_code=fault.status,
                headers={**fault.headers, "content-type": "application/json"},
            )
        if fault and fault.kind == "slow":
            await asyncio.sleep(fault.delay_s)
        if "model" not in body or "max_tokens" not in body or not body.get("messages"):
            return _error(400, "model, max_tokens and messages are required")
        try:
            reply, served = charge(self.prompt_cache, body, self.script(body), _workspace(request))
        except CacheRuleError as exc:
            return _error(400, str(exc))
        usage = reply["usage"]
        seen.cache_read_tokens = usage["cache_read_input_tokens"]
        seen.cache_write_tokens = usage["cache_creation_input_tokens"]
        seen.cache_write_1h_tokens = usage["cache_creation"]["ephemeral_1h_input_tokens"]
        seen.input_tokens = usage["input_tokens"] + seen.cache_read_tokens + seen.cache_write_tokens
        seen.output_tokens = usage.get("output_tokens", 0)
        seen.latency_s = self.delay_for(body, tag)
        if not body.get("stream"):
            await self._wait(seen)
            served.begin_response()
            return Response(
                message_json(reply), media_type="application/json", headers=limit_headers
            )
        return StreamingResponse(
            self._events(reply, seen, fault, served),
            media_type=SSE_CONTENT_TYPE,
            headers=limit_headers,
        )

    def _take_rate_slot(self, tier: str, now: float) -> tuple[dict[str, str], bool]:
        """Count a request against its tier's limit: the headers to send, and whether it is over.

        The headers are Anthropic's (anthropic-ratelimit-requests-{limit,remaining,reset},
        reset as RFC 3339; retry-after in whole seconds on a 429).
        """
        limit = self.requests_per_window.get(tier)
        if not limit:
            return {}, False
        with self._lock:
            accepted = self._accepted[tier]
            while accepted and accepted[0] <= now - self.window_s:
                accepted.popleft()
            over = len(accepted) >= limit
            if not over:
                accepted.append(now)
            reset_in = (accepted[0] + self.window_s - now) if accepted else self.window_s
            remaining = max(0, limit - len(accepted))
        reset_at = datetime.now(UTC) + timedelta(seconds=reset_in)
        headers = {
            "anthropic-ratelimit-requests-limit": str(limit),
            "anthropic-ratelimit-requests-remaining": str(remaining),
            "anthropic-ratelimit-requests-reset": reset_at.isoformat().replace("+00:00", "Z"),
        }
        if over:
            headers["retry-after"] = str(max(1, math.ceil(reset_in)))
        return headers, over

    def request_rate(self, tier: str, window_s: float | None = None) -> int:
        """The most requests of `tier` the fake accepted in any window (`window_s`, or its own)."""
        window = self.window_s if window_s is None else window_s
        times = sorted(r.at for r in self.requests if r.tier == tier and r.fault != "rate-limited")
        best, start = 0, 0
        for end, at in enumerate(times):
            while times[start] <= at - window:
                start += 1
            best = max(best, end - start + 1)
        return best

    async def _wait(self, seen: SeenRequest) -> None:
        slot = (seen.tag, seen.tier)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.in_flight_by_tier[slot] += 1
        self.max_in_flight_by_tier[slot] = max(
            self.max_in_flight_by_tier[slot], self.in_flight_by_tier[slot]
        )
        started = time.monotonic()
        try:
            if seen.latency_s:
                await asyncio.sleep(seen.latency_s)
        finally:
            seen.served_s = time.monotonic() - started
            self.in_flight -= 1
            self.in_flight_by_tier[slot] -= 1

    async def _events(
        self, reply: dict[str, Any], seen: SeenRequest, fault: Fault | None, served: Served
    ) -> AsyncIterator[bytes]:
        events = list(message_sse(reply))
        await self._wait(seen)
        served.begin_response()  # what it wrote is readable once its first event is out
        for i, event in enumerate(events):
            if fault and i == 2:
                if fault.kind == "reset":
                    raise ConnectionResetError("injected reset mid-stream")
                if fault.kind == "error_event":
                    yield error_sse(fault.error_type or "overloaded_error", fault.message)
                    return
                if fault.kind == "malformed":
                    yield b"event: content_block_delta\ndata: {not json\n\n"
                    return
            yield event


def _workspace(request: Request) -> str:
    """Whose cache a request uses: its key's (the API scopes entries to a workspace)."""
    key = request.headers.get("x-api-key") or request.headers.get("authorization", "")
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _error(status: int, message: str) -> Response:
    return Response(
        error_json(_STATUS_TYPES.get(status, "api_error"), message),
        status_code=status,
        media_type="application/json",
    )
