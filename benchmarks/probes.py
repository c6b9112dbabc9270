"""What the benchmark watches inside a run's process: Prefect API calls, back-offs, the server.

- `ApiCalls` counts every request Prefect's client sends (operation, status,
  seconds). Prefect's client is an `httpx.AsyncClient` (the model SDK talks
  httpx2, so model requests are not counted); the benchmark's run process
  wraps `httpx.AsyncClient.send` to count them. Nothing outside the
  benchmark does this.
- `Backoffs` collects each wait Prefect's client schedules before retrying
  a request, from the client's own debug line ("Received response with
  retryable status code 503. Another attempt will be made in 2.1s. This is
  attempt 1/6."): a 503 from the server ("database is locked" on SQLite),
  or a connection error.
- `settle` waits until the server has recorded a finished run (its task runs
  and its last event), so the next run starts on an idle server, as one
  person's next build would; how long that took is reported, not hidden.

Counts and back-offs do not depend on how busy the machine is the way wall
times do, which is why the report leans on them to say where time goes.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx

_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_BACKOFF = re.compile(r"(status code (\d+)|exception).*made in ([0-9.]+)s\. This is attempt (\d+)")


def operation(method: str, path: str) -> str:
    """`POST /flow_runs/{id}/set_state` for a request, whatever its ids and API prefix."""
    route = _ID.sub("{id}", path).removeprefix("/api")
    return f"{method} {route}"


@dataclass
class Call:
    at: float  # time.monotonic() when sent
    seconds: float
    operation: str
    status: int | str  # the HTTP status, or the exception's name


@dataclass
class ApiCalls:
    """Every Prefect API request of this process once `install()`ed; `window()` per run."""

    calls: list[Call] = field(default_factory=list)

    def install(self) -> None:
        send = httpx.AsyncClient.send
        calls = self.calls

        async def counted(client: httpx.AsyncClient, request: httpx.Request, **kwargs: Any) -> Any:
            started = time.monotonic()
            name = operation(request.method, request.url.path)
            try:
                response = await send(client, request, **kwargs)
            except BaseException as exc:
                calls.append(Call(started, time.monotonic() - started, name, type(exc).__name__))
                raise
            calls.append(Call(started, time.monotonic() - started, name, response.status_code))
            return response

        httpx.AsyncClient.send = counted  # type: ignore[method-assign,assignment]

    @contextmanager
    def window(self) -> Iterator[list[Call]]:
        """The calls sent while the block runs (filled in when it ends)."""
        picked: list[Call] = []
        first = len(self.calls)
        yield picked
        picked.extend(self.calls[first:])


def summarise_calls(calls: list[Call]) -> dict[str, dict[str, Any]]:
    """Per operation: how many, their seconds in all, how many were answered 503."""
    out: dict[str, dict[str, Any]] = {}
    for call in calls:
        row = out.setdefault(call.operation, {"count": 0, "seconds": 0.0, "http_503": 0})
        row["count"] += 1
        row["seconds"] += call.seconds
        row["http_503"] += call.status == 503
    for row in out.values():
        row["seconds"] = round(row["seconds"], 4)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["seconds"]))


@dataclass
class Backoff:
    at: float
    seconds: float
    attempt: int
    cause: str  # "503", another status, or "exception"


class Backoffs(logging.Handler):
    """Each retry wait of Prefect's client (logger `prefect.client`, at debug level)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.seen: list[Backoff] = []

    def install(self) -> None:
        logger = logging.getLogger("prefect.client")
        logger.setLevel(logging.DEBUG)
        logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        match = _BACKOFF.search(record.getMessage())
        if match:
            cause = match.group(2) or "exception"
            self.seen.append(
                Backoff(time.monotonic(), float(match.group(3)), int(match.group(4)), cause)
            )

    def between(self, began: float, ended: float) -> dict[str, Any]:
        waits = [b for b in self.seen if began <= b.at <= ended]
        return {
            "count": len(waits),
            "seconds": round(sum(b.seconds for b in waits), 3),
            "max_attempt": max((b.attempt for b in waits), default=0),
            "http_503": sum(1 for b in waits if b.cause == "503"),
        }


async def settle(run_id: str, tasks: int, timeout_s: float = 60.0) -> float | None:
    """Wait until the server holds the run's `tasks` completed task runs and its final event.

    Returns the seconds waited, or None if the server had not caught up by
    `timeout_s` (reported as such). Only for servers that record task runs
    and events: with those services off, nothing ever arrives.
    """
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
        TaskRunFilter,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    began = time.perf_counter()
    parent = FlowRunFilterParentFlowRunId(any_=[UUID(run_id)])
    subflows_of = FlowRunFilter(parent_flow_run_id=parent)
    completed = TaskRunFilter(
        state=TaskRunFilterState(type=TaskRunFilterStateType(any_=[StateType.COMPLETED]))
    )
    now = datetime.now(UTC)
    final_event = {
        "filter": {
            "occurred": {
                "since": (now - timedelta(hours=1)).isoformat(),
                "until": (now + timedelta(hours=1)).isoformat(),
            },
            "event": {"name": ["prefect.flow-run.Completed"]},
            "resource": {"id": [f"prefect.flow-run.{run_id}"]},
        },
        "limit": 1,
    }
    async with get_client() as client:
        while time.perf_counter() - began < timeout_s:
            runs = await client.read_task_runs(
                flow_run_filter=subflows_of, task_run_filter=completed, limit=200
            )
            # Task runs of the subflows: the agents (the parent's own stand for its subflows).
            if len(runs) >= tasks:
                response = await client.request("POST", "/events/filter", json=final_event)
                response.raise_for_status()
                if response.json().get("events"):
                    return round(time.perf_counter() - began, 3)
            await asyncio.sleep(0.05)
    return None
