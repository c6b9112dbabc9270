"""A pipeline's graph hooks with observers alongside: what a terminal view listens to.

A pipeline keeps its own record through `GraphHooks` (the manifest, events,
the progress artifact); an observer in the same process (the live terminal
view) hears the same calls, after the pipeline, without polling anything.
An observer is a bystander: whatever goes wrong inside it is logged and
dropped, never raised into the run it watches.
"""

from __future__ import annotations

import logging

from tasks.agents.graph import Finished, GraphHooks
from tasks.agents.job import AgentJob

_log = logging.getLogger("agentmill.watch")


def tell(observer: object | None, method: str, *args: object) -> None:
    """`observer.method(*args)` when there is an observer; its failure is logged, never raised."""
    if observer is None:
        return
    try:
        getattr(observer, method)(*args)
    except Exception:
        _log.exception("a run observer failed in %s; the run goes on", method)


class Observed(GraphHooks):
    """`primary`'s hooks first (its errors are the run's), then the observers' (logged)."""

    def __init__(self, primary: GraphHooks, *observers: GraphHooks) -> None:
        self.primary = primary
        self.observers = observers

    def _tell(self, method: str, *args: object) -> None:
        for observer in self.observers:
            tell(observer, method, *args)

    def started(self, role_id: str, job: AgentJob) -> None:
        self.primary.started(role_id, job)
        self._tell("started", role_id, job)

    def finished(self, role_id: str, finished: Finished) -> None:
        self.primary.finished(role_id, finished)
        self._tell("finished", role_id, finished)

    def failed(self, role_id: str, error: str, duration_s: float) -> None:
        self.primary.failed(role_id, error, duration_s)
        self._tell("failed", role_id, error, duration_s)

    def skipped(self, role_id: str, error: str) -> None:
        self.primary.skipped(role_id, error)
        self._tell("skipped", role_id, error)

    async def settled(self, role_id: str) -> None:
        await self.primary.settled(role_id)
        for observer in self.observers:
            try:
                await observer.settled(role_id)
            except Exception:
                _log.exception("a run observer failed in settled; the run goes on")
