"""The progress artifact's writes: few, never inside a hold, always ending on the final count."""

from __future__ import annotations

import asyncio
import logging
from uuid import UUID, uuid4

import pytest

from tasks.build.progress import Progress


class Artifact:
    """Records the writes a Progress makes; `gate` (if set) holds a write until released."""

    def __init__(self) -> None:
        self.writes: list[tuple[float, str]] = []
        self.in_flight = 0
        self.gate: asyncio.Event | None = None
        self.fail = False

    async def write(self, artifact_id: UUID, progress: float, description: str) -> None:
        self.in_flight += 1
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.fail:
                raise RuntimeError("503 Service Unavailable")
            self.writes.append((progress, description))
        finally:
            self.in_flight -= 1


async def test_a_burst_of_updates_is_one_write_of_the_latest_count() -> None:
    artifact = Artifact()
    progress = Progress(uuid4(), total=32, interval_s=60, write=artifact.write)
    for done in range(1, 33):
        progress.update(done)
    await progress.flush()
    assert artifact.writes == [(100.0, "32 of 32 agents done")]
    await progress.flush()  # nothing new: no second write
    assert progress.writes == 1


async def test_updates_in_between_writes_are_coalesced_and_the_last_one_lands() -> None:
    artifact = Artifact()
    progress = Progress(uuid4(), total=10, interval_s=0.05, write=artifact.write)
    for done in range(1, 11):
        progress.update(done)
        await asyncio.sleep(0.01)
    await progress.flush()
    counts = [int(description.split()[0]) for _, description in artifact.writes]
    assert counts == sorted(counts) and counts[-1] == 10
    assert 2 <= len(counts) < 10  # it moved while agents landed, in fewer writes than updates


async def test_nothing_is_written_inside_a_hold_and_a_write_in_flight_finishes_first() -> None:
    artifact = Artifact()
    artifact.gate = asyncio.Event()
    progress = Progress(uuid4(), total=4, interval_s=0.0, write=artifact.write)
    progress.update(1)
    await asyncio.sleep(0.01)
    assert artifact.in_flight == 1  # a write is on its way when the hold begins

    entered = asyncio.Event()

    async def hold() -> None:
        async with progress.held():
            entered.set()
            assert artifact.in_flight == 0
            progress.update(2)
            progress.update(3)
            await asyncio.sleep(0.05)
            assert artifact.in_flight == 0 and len(artifact.writes) == 1

    holder = asyncio.ensure_future(hold())
    await asyncio.sleep(0.01)
    assert not entered.is_set()  # waits for the write in flight
    artifact.gate.set()
    await holder
    await asyncio.sleep(0.01)  # released: the count that landed inside is written
    assert [d for _, d in artifact.writes] == ["1 of 4 agents done", "3 of 4 agents done"]


async def test_a_failed_write_is_logged_and_the_build_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    artifact = Artifact()
    artifact.fail = True
    progress = Progress(uuid4(), total=2, interval_s=0.0, write=artifact.write)
    with caplog.at_level(logging.WARNING, logger="agentmill.build"):
        progress.update(2)
        await progress.flush()
    assert artifact.writes == []
    assert "progress artifact not updated (2 of 2 agents done): 503" in caplog.text


async def test_without_an_artifact_nothing_is_written() -> None:
    artifact = Artifact()
    progress = Progress(None, total=3, write=artifact.write)
    progress.update(3)
    await progress.flush()
    assert artifact.writes == [] and progress.writes == 0
