"""Warming a shared prompt prefix once, so agents that start together read it instead of writing it.

The API makes a cache entry readable only once the response that writes it
has begun, so agents that send their first request at the same moment each
write the team's shared prefix (tools, operating rules, the idea) at 1.25x
the input price (2x for the 1-hour TTL). When at least two agents are about
to send their first request on the same prefix and no request of this
process has written or read it within its TTL, one small request
(`max_tokens=1`) writes it first and they all wait for it; an agent that
starts alone writes it with its own first request, as before, and a prefix
below the model's minimum is never warmed (the API would not cache it).

Who is about to start is counted in two steps. The scheduler holds a ticket
for an agent from the moment its dependencies are done (`expecting`) to its
first request or its end; an agent that reaches its first request waits
there, cold prefix only, until every ticket holder of its prefix has either
arrived too or ended (an agent served from Prefect's cache makes no request
and only ends). Two or more arrived: one warms, all read. No timer is
involved, so an agent that starts alone never waits.

Liveness is what this process saw (the API cache cannot be asked): per
endpoint for Claude, whose cache is the workspace's, per event loop for the
offline model, whose cache lives in its pooled client. What it did not see
(another process warming the same prefix) costs at most one small request.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import weakref
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import anthropic
from anthropic.types import Message

from tasks.common.context import Scoped
from tasks.common.logs import run_logger
from tasks.common.retry import Backoff
from tasks.model.budget import BudgetExhausted, call_estimate, current_budget
from tasks.model.caching import TTL_S, estimate_tokens, min_cacheable_tokens
from tasks.model.endpoint import Endpoint, ModelCallError, Provider
from tasks.model.ledger import CacheLedger
from tasks.model.pricing import Usage, cost_usd
from tasks.model.stream import ModelRequest, PromptCaching, stream_message

# The warm-up's only message, after the shared prefix: the fakes know it by this text.
WARM_UP_PROMPT = "agentmill prompt-cache warm-up: reply with one word."
# One attempt: a warm-up that fails leaves the agents to write the prefix themselves.
_ONE_ATTEMPT = Backoff(max_attempts=1)
# Trust a prefix seen live for most of its TTL only: the entry's clock started
# when the response began, a little before this process saw the reply.
_TTL_TRUST = 0.9


def is_warm_up(request: dict[str, Any]) -> bool:
    """Whether a Messages API request is agentmill's warm-up (the fakes answer it briefly)."""
    messages = request.get("messages") or []
    if len(messages) != 1:
        return False
    content = messages[0].get("content")
    blocks = [{"text": content}] if isinstance(content, str) else content or []
    return any(isinstance(b, dict) and b.get("text") == WARM_UP_PROMPT for b in blocks)


def endpoint_id(endpoint: Endpoint) -> str:
    """Whose cache a request uses: the API's host and the key's workspace (the key hashed).

    The base URL's path is left out: a proxy or the benchmark's fake may tag runs in
    it, and the cache still belongs to the key.
    """
    key = endpoint.api_key.get_secret_value() if endpoint.api_key is not None else ""
    host = urlsplit(endpoint.base_url or "").netloc
    parts = (endpoint.provider, host, endpoint.script_name, key)
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]


def prefix_key(endpoint: Endpoint, request: ModelRequest) -> str | None:
    """The identity of the request's shared prefix; None when it would not be cached."""
    plan = request.caching
    if plan is None or plan.shared_blocks < 1:
        return None
    shared = {
        "tools": request.tools,
        "system": request.system[: plan.shared_blocks],
        "ttl": plan.shared_ttl,
        "model": request.model,
    }
    text = json.dumps(shared, sort_keys=True)
    if estimate_tokens(text) < min_cacheable_tokens(request.model):
        return None
    # The offline model's cache lives in its client, one per event loop.
    where = str(id(asyncio.get_running_loop())) if endpoint.provider == "offline" else ""
    return hashlib.sha256(f"{endpoint_id(endpoint)}\x1f{where}\x1f{text}".encode()).hexdigest()


@dataclass
class WarmUp:
    model: str
    usage: Usage
    cost_usd: float
    uncached_cost_usd: float


@dataclass
class WarmUps:
    """The warm-up requests of one run, for its ledger."""

    done: list[WarmUp] = field(default_factory=list)

    def by_model(self) -> dict[str, CacheLedger]:
        """The warm-ups' ledger per model."""
        models = sorted({w.model for w in self.done})
        return {
            model: CacheLedger.total(
                CacheLedger.of(w.usage, w.cost_usd, w.uncached_cost_usd, warmup=True)
                for w in self.done
                if w.model == model
            )
            for model in models
        }


RUN_WARMUPS: Scoped[WarmUps | None] = Scoped("warmups", None)


# Shared prefixes seen written or read, and until when they are trusted to be cached.
_LIVE_UNTIL: dict[str, float] = {}


def _live(key: str) -> bool:
    return _LIVE_UNTIL.get(key, 0.0) > time.monotonic()


@dataclass
class _Starts:
    """One event loop's agents about to start, per shared prefix, and its warm-ups under way."""

    expected: Counter[str] = field(default_factory=Counter)  # ticket holders
    arrived: Counter[str] = field(default_factory=Counter)  # of those, at their first request
    warming: dict[str, asyncio.Future[None]] = field(default_factory=dict)
    tick: asyncio.Event = field(default_factory=asyncio.Event)

    def changed(self) -> None:
        """Wake every agent waiting for the others to arrive or end."""
        tick, self.tick = self.tick, asyncio.Event()
        tick.set()


_STARTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Starts] = weakref.WeakKeyDictionary()


def _starts() -> _Starts:
    return _STARTS.setdefault(asyncio.get_running_loop(), _Starts())


@dataclass
class _Ticket:
    key: str
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            starts = _starts()
            starts.expected[self.key] -= 1
            starts.changed()


_TICKET: ContextVar[_Ticket | None] = ContextVar("agentmill_warmup_ticket", default=None)


@contextmanager
def expecting(key: str | None) -> Iterator[None]:
    """Count an agent as about to start on `key` until its first request (or its end)."""
    if key is None:
        yield
        return
    _starts().expected[key] += 1
    ticket = _Ticket(key)
    token = _TICKET.set(ticket)
    try:
        yield
    finally:
        _TICKET.reset(token)
        ticket.release()


def saw(key: str | None, ttl: str, message: Message) -> None:
    """A reply read or wrote the cache: the shared prefix is live for its TTL from now."""
    usage = message.usage
    if key is not None and (usage.cache_read_input_tokens or usage.cache_creation_input_tokens):
        _LIVE_UNTIL[key] = time.monotonic() + _TTL_TRUST * TTL_S[ttl]


async def before_first_request(
    client: anthropic.AsyncAnthropic,
    request: ModelRequest,
    key: str | None,
    *,
    provider: Provider,
    who: str,
) -> None:
    """Wait until the shared prefix is cached if others start on it too; warm it if need be."""
    ticket = _TICKET.get()
    try:
        if key is None or request.caching is None:
            return
        starts = _starts()
        scheduled = ticket is not None and ticket.key == key
        if scheduled:
            starts.arrived[key] += 1
            starts.changed()
        try:
            while True:
                pending = starts.warming.get(key)
                if pending is not None:
                    await asyncio.shield(pending)  # a failed warm-up: the agents write it
                    return
                if _live(key) or not scheduled:
                    return
                if starts.arrived[key] >= 2:
                    break
                if starts.expected[key] <= starts.arrived[key]:
                    return  # nobody else is coming: its own first request writes the prefix
                await starts.tick.wait()
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            starts.warming[key] = done
            try:
                await _warm(client, request, key, provider=provider, who=who)
            finally:
                del starts.warming[key]
                done.set_result(None)
        finally:
            if scheduled:
                starts.arrived[key] -= 1
    finally:
        if ticket is not None:  # this agent's own: it is no longer about to start
            ticket.release()


async def _warm(
    client: anthropic.AsyncAnthropic,
    request: ModelRequest,
    key: str,
    *,
    provider: Provider,
    who: str,
) -> None:
    assert request.caching is not None
    plan = request.caching
    warm = ModelRequest(
        model=request.model,
        system=request.system[: plan.shared_blocks],
        messages=[{"role": "user", "content": WARM_UP_PROMPT}],
        tools=request.tools,
        max_tokens=1,
        timeout_s=request.timeout_s,
        tier=request.tier,  # a warm-up is a model request too: it takes the tier's limits
        caching=PromptCaching(
            shared_blocks=plan.shared_blocks, shared_ttl=plan.shared_ttl, mark_last=False
        ),
    )
    log = run_logger("agentmill.cache")
    budget = current_budget() if provider != "offline" else None
    try:
        hold = budget.reserve(f"{who} (warm-up)", call_estimate(warm)) if budget else 0
    except BudgetExhausted:
        return  # the agents' own calls meet the budget and say so
    cost = 0.0
    try:
        reply = await stream_message(client, warm, who=f"{who} (warm-up)", backoff=_ONE_ATTEMPT)
        usage = Usage.of(reply)
        usage.requests = 1
        cost = cost_usd(request.model, usage, provider)
    except ModelCallError as exc:
        log.warning("warming the shared prompt prefix failed (%s); agents write it instead", exc)
        return
    finally:
        if budget:
            budget.settle(hold, cost)
    uncached = cost_usd(request.model, usage.without_cache(), provider)
    saw(key, plan.shared_ttl, reply)
    warmups = RUN_WARMUPS.get()
    if warmups is not None:
        warmups.done.append(WarmUp(request.model, usage, cost, uncached))
    log.info(
        "warmed the shared prompt prefix on %s (%d tokens written) before %d agents start: $%.6f",
        request.model, usage.cache_write_tokens, _starts().arrived[key], cost,
    )  # fmt: skip
