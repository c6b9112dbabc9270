"""Rate limits the whole fleet obeys: Prefect global concurrency limits per model tier.

Anthropic's limits are per organisation and model family, so every worker of
a fleet shares them. Two Prefect global concurrency limits per tier, kept on
the server every worker talks to (`agentmill limits apply` creates them):

- `agentmill-<tier>-in-flight`: requests of the tier in flight at once
  (`concurrency()`, a slot held for the request's whole stream);
- `agentmill-<tier>-per-minute`: a `rate_limit()` whose slots decay at
  limit / 60 per second, so the fleet's request rate stays under the limit.

Which of them exist is read from the server at most once a minute per process
(one API call), not per request: Prefect's `concurrency()` on a missing limit
costs a round trip and logs a warning every time. (Once per flow run was five
reads a build, one per phase subflow, 60-130 ms each on SQLite: measured in
benchmarks/results.md's requests per operation.) With none configured nothing
is taken, and the single-machine path keeps its speed. `agentmill limits apply`
and `clear` make this process read them again at once.

Within one process the tier is also paced from the API's own
`anthropic-ratelimit-*` response headers: once a remaining count falls under
a low-water mark, the tier's next requests wait a share of the time to the
reset, and with nothing left they wait for the reset. That slows a tier
down before the API answers 429.
https://docs.anthropic.com/en/api/rate-limits (response headers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

log = logging.getLogger("agentmill.limits")

TIERS = ("opus", "sonnet", "haiku")
# Under this share of a limit left, the tier's requests are spaced out until the reset.
LOW_WATER = 0.2
MAX_PACE_WAIT_S = 60.0
# The kinds of Anthropic's rate-limit headers: anthropic-ratelimit-<kind>-{limit,remaining,reset}.
HEADER_KINDS = ("requests", "tokens", "input-tokens", "output-tokens")


def in_flight_name(tier: str) -> str:
    return f"agentmill-{tier}-in-flight"


def per_minute_name(tier: str) -> str:
    return f"agentmill-{tier}-per-minute"


@dataclass(frozen=True)
class FleetLimits:
    """Which tiers have which limit on the server (active ones only)."""

    in_flight: frozenset[str] = frozenset()
    per_minute: frozenset[str] = frozenset()

    @classmethod
    def from_names(cls, names: set[str]) -> FleetLimits:
        return cls(
            in_flight=frozenset(t for t in TIERS if in_flight_name(t) in names),
            per_minute=frozenset(t for t in TIERS if per_minute_name(t) in names),
        )


# Per event loop: the read in progress or done (a task, so concurrent first requests share
# it) and when it began; a read older than this is made again, so a limit applied while a
# long build runs is obeyed within a minute.
_known: dict[int, tuple[asyncio.Future[FleetLimits], float]] = {}
REREAD_AFTER_S = 60.0


async def _read_limits() -> FleetLimits:
    from prefect.client.orchestration import get_client

    try:
        async with get_client() as client:
            limits = await client.read_global_concurrency_limits(limit=200)
    except Exception as exc:  # no server reachable: run unlimited, and say so once
        log.warning("could not read the fleet's rate limits (%s); running without them", exc)
        return FleetLimits()
    return FleetLimits.from_names({lim.name for lim in limits if lim.active})


async def fleet_limits() -> FleetLimits:
    """The limits configured on the server, read on first use and then once a minute."""
    loop = asyncio.get_running_loop()
    known = _known.get(id(loop))
    now = time.monotonic()
    if known is None or known[0].get_loop() is not loop or now - known[1] > REREAD_AFTER_S:
        known = _known[id(loop)] = (asyncio.ensure_future(_read_limits()), now)
    return await asyncio.shield(known[0])


def forget_limits() -> None:
    """Read the limits again on next use (after `agentmill limits apply` in the same process)."""
    _known.clear()


@contextlib.asynccontextmanager
async def request_slot(tier: str) -> AsyncIterator[None]:
    """Hold the tier's fleet-wide slots for one request; nothing when none is configured."""
    await pacer(tier).wait()
    limits = await fleet_limits() if tier else FleetLimits()
    if tier in limits.per_minute:
        from prefect.concurrency.asyncio import rate_limit

        await rate_limit(per_minute_name(tier), strict=True)
    if tier in limits.in_flight:
        from prefect.concurrency.asyncio import concurrency

        async with concurrency(in_flight_name(tier), strict=True):
            yield
    else:
        yield


@dataclass
class Pacer:
    """Holds one tier's requests in this process back when the API's headers say it is near
    its limit: nothing left, wait for the reset; little left, keep the next starts apart by
    the time to the reset shared out over what remains (one gap, not a queue of them: each
    reply's headers say again how much remains)."""

    not_before: float = 0.0  # monotonic time before which no request of the tier starts

    def observe(self, headers: Mapping[str, str], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for kind in HEADER_KINDS:
            limit = _number(headers.get(f"anthropic-ratelimit-{kind}-limit"))
            remaining = _number(headers.get(f"anthropic-ratelimit-{kind}-remaining"))
            reset_in = _seconds_until(headers.get(f"anthropic-ratelimit-{kind}-reset"))
            if limit is None or remaining is None or reset_in is None or limit <= 0:
                continue
            if remaining <= 0:
                hold = reset_in
            elif remaining <= limit * LOW_WATER:
                hold = reset_in / (remaining + 1)
            else:
                continue
            self.not_before = max(self.not_before, now + min(hold, MAX_PACE_WAIT_S))

    async def wait(self) -> None:
        if not self.not_before:
            return  # the common case: no header ever said the tier is near its limit
        delay = self.not_before - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            self.not_before = 0.0


_pacers: dict[str, Pacer] = {}


def pacer(tier: str) -> Pacer:
    found = _pacers.get(tier)
    if found is None:
        found = _pacers[tier] = Pacer()
    return found


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _seconds_until(value: str | None) -> float | None:
    """Seconds from now to an RFC 3339 reset time (Anthropic's format)."""
    if not value:
        return None
    try:
        reset = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if reset.tzinfo is None:
        reset = reset.replace(tzinfo=UTC)
    return max(0.0, (reset - datetime.now(UTC)).total_seconds())
