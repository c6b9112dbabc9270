"""Anthropic's prompt-caching rules, and the usage they produce: one implementation for every fake.

The offline model and the fake Messages API of tests and benchmarks answer
through `PromptCache`, so the cache reads and writes they report are the
ones the real API would report for the same requests, not a guess:

- the cache is an exact prefix in the order tools -> system -> messages; a
  `cache_control` marker (a breakpoint) writes an entry for everything up to
  and including its block, and the marker itself is not part of the prefix;
- at most 4 breakpoints per request (a fifth is a 400), and a `ttl="1h"`
  breakpoint may not follow a `ttl="5m"` one (a 400 too);
- a prefix shorter than the model's minimum is silently not cached;
- each breakpoint looks for an entry at its own block and up to 19 blocks
  before it (20 positions); the longest entry found is read, the breakpoints
  after it are written;
- an entry lives 5 minutes (or 1 hour), refreshed each time it is read, and
  becomes readable only once the response that wrote it has begun, so
  requests sent at the same moment all miss and all write;
- entries are per workspace (API key) and per model.

Source: https://platform.claude.com/docs/en/build-with-claude/prompt-caching
(sections "How prompt caching works", "Cache limitations", "Mixing different
TTLs"), read through the search tool's stored copies in December 2026, and the
API's own 400 messages as quoted in anthropic-sdk users' bug reports. Not
modelled: automatic (top-level) caching, thinking blocks, images, and the
invalidation of message entries by a changed `tool_choice`, none of which
agentmill sends.

When a read refreshes an entry, only the entry read is refreshed here (the
docs do not say whether shorter entries inside it are too); that is the
conservative choice: it can only under-report hits, never invent one.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from tasks.common.errors import AgentmillError

Ttl = Literal["5m", "1h"]
TTL_S: dict[str, float] = {"5m": 300.0, "1h": 3600.0}
MAX_BREAKPOINTS = 4
LOOKBACK_BLOCKS = 20  # positions checked per breakpoint, the breakpoint's own included

# The minimum cacheable prompt length, in tokens, per model id ("Cache limitations").
# The stored copy of the page (July 2026) lists the models up to Claude Opus 5;
# Opus 5.5, Sonnet 5.5 and Haiku 5.5 are in the page as quoted on 2026-10-08
# ("512 tokens for Claude Fable 5.1, Claude Mythos 5.1, Claude Opus 5.5, Claude
# Opus 5, Claude Sonnet 5.5, Claude Fable 5, Claude Mythos 5, and Claude Haiku
# 5.5"), in two independent research notes found through the search tool.
MIN_CACHEABLE_TOKENS: dict[str, int] = {
    "claude-fable-5-1": 512,
    "claude-mythos-5-1": 512,
    "claude-opus-5-5": 512,
    "claude-sonnet-5-5": 512,
    "claude-haiku-5-5": 512,
    "claude-opus-5": 512,
    "claude-fable-5": 512,
    "claude-mythos-5": 512,
    "claude-mythos-preview": 2048,
    "claude-opus-4-7": 2048,
    "claude-opus-4-6": 4096,
    "claude-opus-4-5": 4096,
    "claude-opus-4-8": 1024,
    "claude-sonnet-5": 1024,
    "claude-sonnet-4-6": 1024,
    "claude-sonnet-4-5": 1024,
    "claude-opus-4-1": 1024,
    "claude-opus-4": 1024,
    "claude-sonnet-4": 1024,
    "claude-haiku-4-5": 4096,
    "claude-haiku-3-5": 2048,
}
# A model id with no row (a new model, a proxy's alias) gets the largest
# minimum of the table: agentmill then never reports a cache the API may not
# give, and the first real run's usage shows what it does.
UNKNOWN_MODEL_MIN_TOKENS = 4096


class CacheRuleError(AgentmillError, ValueError):
    """A request breaks a prompt-caching rule; the API answers it with a 400 saying this."""


def model_row(table: dict[str, Any], model: str) -> Any | None:
    """The row of `table` for `model`: its own id, or the longest id it extends (dated ids)."""
    if model in table:
        return table[model]
    matches = [name for name in table if model.startswith(name + "-")]
    return table[max(matches, key=len)] if matches else None


def min_cacheable_tokens(model: str) -> int:
    row = model_row(MIN_CACHEABLE_TOKENS, model)
    return int(row) if row is not None else UNKNOWN_MODEL_MIN_TOKENS


def estimate_tokens(text: str) -> int:
    """About four characters a token: close to the API's count for English and code."""
    return max(1, (len(text) + 3) // 4)


@dataclass(frozen=True)
class _Block:
    digest: str  # of the prefix up to and including this block, markers left out
    tokens: int  # this block's own tokens
    ttl: Ttl | None  # its breakpoint's TTL, or None when it carries no cache_control


def _blocks(request: dict[str, Any]) -> list[_Block]:
    """The request's blocks in cache order (tools, system, messages), with running digests.

    A string `system` or message `content` is one text block, as the API
    reads it, so a message marked by turning its string into a block keeps
    its prefix.
    """
    items: list[tuple[str, dict[str, Any]]] = [("tool", t) for t in request.get("tools") or []]
    items += [("system", b) for b in _as_blocks(request.get("system") or [])]
    for message in request.get("messages") or []:
        for i, block in enumerate(_as_blocks(message.get("content", ""))):
            items.append((f"{message.get('role')}{'' if i else ':start'}", block))
    running = hashlib.sha256(str(request.get("model", "")).encode())
    out: list[_Block] = []
    for where, block in items:
        bare = {k: v for k, v in block.items() if k != "cache_control"}
        text = json.dumps(bare, sort_keys=True, ensure_ascii=False)
        running.update(f"\x1e{where}\x1f{text}".encode())
        out.append(_Block(running.hexdigest(), estimate_tokens(text), _ttl_of(block)))
    return out


def _as_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return [b for b in content if isinstance(b, dict)]


def _ttl_of(block: dict[str, Any]) -> Ttl | None:
    control = block.get("cache_control")
    if control is None:
        return None
    if not isinstance(control, dict) or control.get("type") != "ephemeral":
        raise CacheRuleError("cache_control.type: Input should be 'ephemeral'")
    ttl = control.get("ttl", "5m")
    if ttl not in TTL_S:
        raise CacheRuleError(f"cache_control.ttl: Input should be '5m' or '1h', not {ttl!r}")
    if block.get("type") == "text" and not block.get("text"):
        raise CacheRuleError("cache_control cannot be set for empty text blocks")
    return ttl  # type: ignore[no-any-return]


def check_breakpoints(request: dict[str, Any]) -> None:
    """Raise CacheRuleError as the API would: more than 4 markers, or 1h after 5m."""
    _check(_blocks(request))


def _check(blocks: list[_Block]) -> None:
    ttls = [b.ttl for b in blocks if b.ttl is not None]
    if len(ttls) > MAX_BREAKPOINTS:
        raise CacheRuleError(
            f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {len(ttls)}."
        )
    if "1h" in ttls and "5m" in ttls[: len(ttls) - ttls[::-1].index("1h")]:
        raise CacheRuleError(
            "a ttl='1h' cache_control block must not come after a ttl='5m' cache_control block"
        )


@dataclass
class _Entry:
    expires_at: float
    ttl_s: float


@dataclass
class Served:
    """What one request was charged, and the entries it writes once its response begins."""

    usage: dict[str, Any]
    prompt_tokens: int
    _writes: list[tuple[str, float]] = field(default_factory=list)
    _cache: PromptCache | None = None

    def begin_response(self) -> None:
        """The response started: what this request wrote can be read from now on."""
        if self._cache is not None:
            self._cache.commit(self._writes)
            self._writes = []


class PromptCache:
    """The cache of one API: entries per (workspace, model, prefix), with their expiry.

    `serve(request, workspace)` charges a request (usage as the API reports
    it) and returns the entries to write when its response begins. The clock
    can be moved on (`advance`) to show what an expired TTL does.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._offset = 0.0
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def now(self) -> float:
        return self._clock() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the cache's clock on: entries whose TTL runs out in between expire."""
        self._offset += seconds

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def serve(self, request: dict[str, Any], workspace: str = "") -> Served:
        """The usage of `request` under the caching rules; CacheRuleError if it breaks one."""
        blocks = _blocks(request)
        _check(blocks)
        model = str(request.get("model", ""))
        scope = hashlib.sha256(f"{workspace}\x1f{model}".encode()).hexdigest()[:16]
        running = [0]
        for block in blocks:
            running.append(running[-1] + block.tokens)  # running[i + 1]: tokens up to block i
        total = running[-1]
        marked = [i for i, b in enumerate(blocks) if b.ttl is not None]
        with self._lock:
            now = self.now()
            read_at = -1
            for b in marked:
                for i in range(b, max(-1, b - LOOKBACK_BLOCKS), -1):
                    entry = self._entries.get(f"{scope}/{blocks[i].digest}")
                    if entry is not None and entry.expires_at > now:
                        read_at = max(read_at, i)
                        break
            if read_at >= 0:
                entry = self._entries[f"{scope}/{blocks[read_at].digest}"]
                entry.expires_at = now + entry.ttl_s  # a read refreshes the entry it read
        minimum = min_cacheable_tokens(model)
        read = running[read_at + 1]
        written = {"5m": 0, "1h": 0}
        writes: list[tuple[str, float]] = []
        start = read
        for b in marked:
            if b <= read_at or running[b + 1] < minimum:
                continue
            ttl = blocks[b].ttl or "5m"
            written[ttl] += running[b + 1] - start
            start = running[b + 1]
            writes.append((f"{scope}/{blocks[b].digest}", TTL_S[ttl]))
        write = written["5m"] + written["1h"]
        usage = {
            "input_tokens": total - read - write,
            "cache_creation_input_tokens": write,
            "cache_read_input_tokens": read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": written["5m"],
                "ephemeral_1h_input_tokens": written["1h"],
            },
        }
        return Served(usage=usage, prompt_tokens=total, _writes=writes, _cache=self)

    def commit(self, writes: list[tuple[str, float]]) -> None:
        with self._lock:
            now = self.now()
            for key, ttl_s in writes:
                self._entries[key] = _Entry(expires_at=now + ttl_s, ttl_s=ttl_s)
            if len(self._entries) > 50_000:  # a long-lived fake: drop what has expired
                self._entries = {k: e for k, e in self._entries.items() if e.expires_at > now}


def prompt_tokens(request: dict[str, Any]) -> int:
    """The prompt's size in tokens as the fakes count it (tools, system and messages)."""
    return sum(b.tokens for b in _blocks(request))


def charge(
    cache: PromptCache, request: dict[str, Any], reply: dict[str, Any], workspace: str = ""
) -> tuple[dict[str, Any], Served]:
    """`reply` with the usage the API would report for `request`, and what it writes.

    The reply's own `output_tokens` stay; every prompt-token figure comes from
    the cache. Call `begin_response()` on the second value when the response
    starts. Raises CacheRuleError for a request the API would refuse.
    """
    served = cache.serve(request, workspace)
    return {**reply, "usage": {**reply.get("usage", {}), **served.usage}}, served
