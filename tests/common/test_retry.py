"""The one retry helper: attempts, waits (retry-after honoured and capped), the final error."""

from __future__ import annotations

import pytest

from tasks.common.errors import AgentmillError
from tasks.common.retry import Backoff, Transient, retrying


class GaveUp(AgentmillError):
    pass


async def run(faults: list[Exception | None], backoff: Backoff) -> tuple[str, list[float], int]:
    waits: list[float] = []
    calls = 0

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async def attempt() -> str:
        nonlocal calls
        fault = faults[calls] if calls < len(faults) else None
        calls += 1
        if fault is not None:
            raise fault
        return "ok"

    def exhausted(fault: Transient, attempts: int) -> GaveUp:
        return GaveUp(f"{fault.what} after {attempts} attempts")

    result = await retrying(attempt, backoff=backoff, who="test", exhausted=exhausted, sleep=sleep)
    return result, waits, calls


async def test_transient_faults_are_retried_with_the_servers_wait_or_jittered_backoff() -> None:
    backoff = Backoff(max_attempts=5, base_delay_s=1.0, max_delay_s=8.0, max_retry_after_s=30.0)
    faults: list[Exception | None] = [
        Transient("429", retry_after_s=2.5),
        Transient("529"),
        Transient("529"),
        Transient("429", retry_after_s=600.0),  # capped
    ]
    result, waits, calls = await run(faults, backoff)
    assert result == "ok" and calls == 5
    assert waits[0] == 2.5 and waits[3] == 30.0
    assert 0.75 * 2.0 <= waits[1] <= 1.25 * 2.0  # attempt 2: base * 2, spread by the jitter
    assert 0.75 * 4.0 <= waits[2] <= 1.25 * 4.0


async def test_running_out_raises_the_callers_error_and_a_permanent_fault_is_not_retried() -> None:
    backoff = Backoff(max_attempts=3, base_delay_s=0.0)
    with pytest.raises(GaveUp, match="503 after 3 attempts"):
        await run([Transient("503")] * 5, backoff)
    with pytest.raises(ValueError, match="bad request"):
        await run([ValueError("bad request")], backoff)


def test_backoff_grows_to_its_cap() -> None:
    backoff = Backoff(base_delay_s=0.5, max_delay_s=4.0, jitter=0.0)
    assert [backoff.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
