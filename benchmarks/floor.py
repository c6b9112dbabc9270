"""Prefect's floor for agentmill's shape: the same flows, subflows and tasks, doing nothing.

An async parent flow creates one subflow per phase, each once the one
before it is running, and lets their tasks run only when the last one is
(as `Build.start_phases` does); inside, one async task per role, with a
content cache key and a persisted result like the agent task, awaits its
dependencies' futures.
No model, no git, no files: what is left is what Prefect itself costs, so
agentmill's zero-latency wall minus this is what agentmill's own code costs.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar
from typing import Any, cast

from prefect import flow, task
from prefect.client.schemas.objects import State
from prefect.context import TaskRunContext

from tasks.build.planning import Plan

_FUTURES: ContextVar[dict[str, asyncio.Future[str]]] = ContextVar("floor_futures")
_STARTED: ContextVar[dict[str, asyncio.Event]] = ContextVar("floor_started")
_ALL_RUNNING: ContextVar[asyncio.Event] = ContextVar("floor_all_running")


def _unique_key(_: TaskRunContext, parameters: dict[str, Any]) -> str:
    return f"floor-{parameters['run']}-{parameters['role']}"


@task(name="agent", task_run_name="{role}", cache_key_fn=_unique_key, persist_result=True)
async def noop_agent(run: str, role: str) -> str:
    return role


@flow(name="floor_phase", flow_run_name="phase-{phase}")
async def floor_phase(run: str, phase: str, roles: list[str], deps: dict[str, list[str]]) -> int:
    futures = _FUTURES.get()
    _STARTED.get()[phase].set()
    await _ALL_RUNNING.get().wait()  # as run_phase does: no task runs during a creation

    async def one(role: str) -> None:
        await asyncio.gather(*(futures[d] for d in deps[role]))
        result = await cast("Awaitable[str]", noop_agent(run, role))
        futures[role].set_result(result)

    await asyncio.gather(*(one(r) for r in roles))
    return len(roles)


@flow(name="floor_build")
async def floor_build(phases: dict[str, list[str]], deps: dict[str, list[str]]) -> float:
    """Returns the inner wall time (from the first subflow's start to the last's end)."""
    run = uuid.uuid4().hex
    loop = asyncio.get_running_loop()
    _FUTURES.set({r: loop.create_future() for rs in phases.values() for r in rs})
    started_events = {p: asyncio.Event() for p in phases}
    _STARTED.set(started_events)
    all_running = asyncio.Event()
    _ALL_RUNNING.set(all_running)
    begin = time.perf_counter()
    runs = []
    for phase, roles in phases.items():
        runs.append(asyncio.ensure_future(floor_phase(run, phase, roles, deps)))
        started = asyncio.ensure_future(started_events[phase].wait())
        await asyncio.wait([runs[-1], started], return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
    all_running.set()
    await asyncio.gather(*runs)
    return time.perf_counter() - begin


def run_floor(plan: Plan) -> tuple[float, float, str | None]:
    """(wall of the call, inner wall, flow run id) of the skeleton of `plan`, run as
    `abuild_app` is."""
    phases = {p.name: p.roles for p in plan.phases}
    deps = {r: plan.role_deps(r) for r in plan.order}
    started = time.perf_counter()
    call = cast("Coroutine[Any, Any, State[float]]", floor_build(phases, deps, return_state=True))
    state: State[float] = asyncio.run(call)
    wall = time.perf_counter() - started
    run_id = state.state_details.flow_run_id
    return wall, state.result(), None if run_id is None else str(run_id)


@flow(name="empty_sync")
def _empty_sync() -> None:
    """Nothing: what a sync flow call costs by itself."""


@flow(name="empty_async")
async def _empty_async() -> None:
    """Nothing: what an async flow call costs by itself."""


def empty_flow_calls() -> dict[str, float]:
    """Seconds of an empty sync and an empty async flow call (the better of two each).

    Their difference is the sync flow's wait for its heartbeat thread, which
    sleeps in whole seconds and is joined when the flow ends.
    """

    def empty_async() -> None:
        asyncio.run(_empty_async())

    out: dict[str, float] = {}
    calls: tuple[tuple[str, Callable[[], None]], ...] = (
        ("empty_sync_flow_s", _empty_sync),
        ("empty_async_flow_s", empty_async),
    )
    for name, call in calls:
        times = []
        for _ in range(2):
            started = time.perf_counter()
            call()
            times.append(time.perf_counter() - started)
        out[name] = min(times)
    return out


@flow(name="warm_up_phase")
async def _warm_up_phase() -> str:
    return await cast("Awaitable[str]", noop_agent(uuid.uuid4().hex, "WARM_UP"))


@flow(name="warm_up")
def warm_up() -> str:
    """One flow, subflow and task: pays Prefect's one-time costs in a process (client,
    events, logging, result storage), which are start-up, not per-build overhead."""
    return asyncio.run(_warm_up_phase())
