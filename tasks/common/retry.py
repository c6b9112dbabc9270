"""One way to retry: bounded attempts, exponential backoff with jitter, `retry-after` honoured.

The model client and the GitHub client both retry through `retrying`, built
on tenacity. An attempt that can pass raises `Transient` (saying what went
wrong and, if the server said so, when to try again); anything else it
raises ends the call at once. When the attempts run out, the caller's
`exhausted` turns the last `Transient` into its own fix-it error.

Retries live in one layer per call: the SDK's own retries are off and the
agent task has none, so attempts never multiply across layers.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from tasks.common.errors import AgentmillError
from tasks.common.logs import run_logger

T = TypeVar("T")


class Transient(AgentmillError):
    """One attempt failed in a way that can pass; `retry_after_s` is the server's own wait."""

    def __init__(self, what: str, retry_after_s: float | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Backoff:
    """How many attempts a call gets, and how long to wait between them."""

    max_attempts: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    max_retry_after_s: float = 120.0
    jitter: float = 0.25  # each backoff delay is spread by this fraction either way

    def delay(self, attempt: int, retry_after_s: float | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        if retry_after_s is not None:  # the server said when: no jitter, but a cap
            return min(max(0.0, retry_after_s), self.max_retry_after_s)
        backoff = min(self.base_delay_s * 2.0 ** (attempt - 1), self.max_delay_s)
        spread = 1.0 - self.jitter + 2.0 * self.jitter * random.random()  # noqa: S311 - jitter
        return backoff * spread


async def retrying(
    attempt: Callable[[], Awaitable[T]],
    *,
    backoff: Backoff,
    who: str,
    exhausted: Callable[[Transient, int], Exception],
    on_retry: Callable[[Transient, float], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Call `attempt` until it returns, raises something other than `Transient`, or runs out."""

    def wait(state: tenacity.RetryCallState) -> float:
        return backoff.delay(state.attempt_number, _transient(state).retry_after_s)

    def before_sleep(state: tenacity.RetryCallState) -> None:
        fault = _transient(state)
        delay = state.upcoming_sleep
        if on_retry is not None:
            on_retry(fault, delay)
        run_logger("agentmill.retry").warning(
            "%s: %s; retrying in %.2fs (attempt %d of %d)",
            who, fault.what, delay, state.attempt_number + 1, backoff.max_attempts,
        )  # fmt: skip

    retryer = tenacity.AsyncRetrying(
        stop=tenacity.stop_after_attempt(backoff.max_attempts),
        wait=wait,
        retry=tenacity.retry_if_exception_type(Transient),
        before_sleep=before_sleep,
        sleep=sleep,
        reraise=True,
    )
    try:
        return await retryer(attempt)
    except Transient as fault:
        raise exhausted(fault, backoff.max_attempts) from fault.__cause__


def _transient(state: tenacity.RetryCallState) -> Transient:
    error = state.outcome.exception() if state.outcome is not None else None
    assert isinstance(error, Transient)  # the retry condition admits nothing else
    return error
