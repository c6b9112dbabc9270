"""The build's progress artifact: it advances as agents land, in a few writes.

Each update is a request that writes to the Prefect database. On SQLite a
write that lands while the server creates a flow run (which reads, then
writes, in one deferred transaction) fails that creation with "database is
locked", and the Prefect client tries again only after 2 s (then 4, 8, ...).
So the artifact is written at most once per `interval_s`, the latest count
winning (none is lost: a count that lands during a write is written next),
never while the build holds it (around phase-subflow creation, and from a
phase's end until its subflow's final state is written: `hold()`, `held()`),
and once more at the end (`flush()`), so the last value is always the final
count. A failed write is logged and does not touch the build.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from uuid import UUID

from prefect.artifacts import aupdate_progress_artifact

from tasks.common.logs import run_logger

Write = Callable[[UUID, float, str], Awaitable[object]]
INTERVAL_S = 1.0  # a person watching the UI sees it move; a 32-agent build writes it ~10 times


async def _update_artifact(artifact_id: UUID, progress: float, description: str) -> object:
    return await aupdate_progress_artifact(artifact_id, progress=progress, description=description)


class Progress:
    """`progress.update(done)` as agents settle; `await progress.flush()` when the build ends."""

    def __init__(
        self,
        artifact_id: UUID | None,
        total: int,
        interval_s: float = INTERVAL_S,
        write: Write = _update_artifact,
    ) -> None:
        self.artifact_id = artifact_id
        self.total = total
        self.interval_s = interval_s
        self.writes = 0
        self._write = write
        self._latest = 0
        self._changed = False  # a count (or total) not written yet
        self._next_at = 0.0  # loop time before which no write starts
        self._holds = 0
        self._lock = asyncio.Lock()  # one write in flight at a time
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    def update(self, done: int, total: int | None = None) -> None:
        """Record that `done` of `total` agents have settled; written now or within `interval_s`.

        `total` grows when a phase's checks add fix agents; without it, it stays.
        """
        if total is not None and total != self.total:
            self.total = total
            self._changed = True
        if done > self._latest:
            self._latest = done
            self._changed = True
        self._schedule()

    def hold(self) -> Callable[[], None]:
        """No write starts until the returned release is called (once; more calls do nothing)."""
        self._holds += 1
        self._cancel_timer()
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._holds -= 1
                self._schedule()

        return release

    async def idle(self) -> None:
        """Wait until no write is in flight."""
        async with self._lock:
            pass

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """No write starts inside; one already in flight finishes before the body runs."""
        release = self.hold()
        try:
            await self.idle()
            yield
        finally:
            release()

    async def flush(self) -> None:
        """Write the latest count now unless it is written already, and wait for it."""
        self._cancel_timer()
        await self._write_latest()

    def _schedule(self) -> None:
        if self.artifact_id is None or self._holds or self._timer is not None:
            return
        if not self._changed or (self._task and not self._task.done()):
            return  # nothing new, or the write in flight schedules the next one
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(max(0.0, self._next_at - loop.time()), self._start)

    def _start(self) -> None:
        self._timer = None
        if not self._holds:
            self._task = asyncio.ensure_future(self._write_latest())

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _write_latest(self) -> None:
        async with self._lock:
            done, total = self._latest, self.total
            if self.artifact_id is None or not self._changed:
                return
            self._changed = False  # an update during the write sets it again
            try:
                await self._write(
                    self.artifact_id,
                    round(100 * done / total, 1) if total else 0.0,
                    f"{done} of {total} agents done",
                )
            except Exception as exc:  # the artifact is a view; the build goes on without it
                run_logger("agentmill.build").warning(
                    "progress artifact not updated (%d of %d agents done): %s",
                    done, total, exc,
                )  # fmt: skip
            self.writes += 1
            self._next_at = asyncio.get_running_loop().time() + self.interval_s
        self._schedule()  # a count that landed during the write
