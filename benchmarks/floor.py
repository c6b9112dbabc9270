"""Prefect's floor for agentmill's shape: the same flows, subflows and tasks, doing nothing.

A sync parent flow runs an async orchestrator that starts one subflow per
phase (each once the one before it is running, as `Build.start_phases`
does); inside, one async task per role, with a content cache key and a
persisted result like the agent task, awaits its dependencies' futures.
No model, no git, no files: what is left is what Prefect itself costs, so
agentmill's zero-latency wall minus this is what agentmill's own code costs.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, cast

from prefect import flow, task
from prefect.context import TaskRunContext

from tasks.build.planning import Plan

_FUTURES: ContextVar[dict[str, asyncio.Future[str]]] = ContextVar("floor_futures")
_STARTED: ContextVar[dict[str, asyncio.Event]] = ContextVar("floor_started")
_STARTS_DONE: ContextVar[asyncio.Event] = ContextVar("floor_starts_done")


def _unique_key(_: TaskRunContext, parameters: dict[str, Any]) -> str:
    return f"floor-{parameters['run']}-{parameters['role']}"


@task(name="agent", task_run_name="{role}", cache_key_fn=_unique_key, persist_result=True)
async def noop_agent(run: str, role: str) -> str:
    return role


@flow(name="floor_phase", flow_run_name="phase-{phase}")
async def floor_phase(run: str, phase: str, roles: list[str], deps: dict[str, list[str]]) -> int:
    futures = _FUTURES.get()
    _STARTED.get()[phase].set()

    async def one(role: str) -> None:
        await asyncio.gather(*(futures[d] for d in deps[role]))
        result = await cast("Awaitable[str]", noop_agent(run, role))
        futures[role].set_result(result)

    await asyncio.gather(*(one(r) for r in roles))
    await _STARTS_DONE.get().wait()  # as run_phase does: no state write during a creation
    return len(roles)


@flow(name="floor_build")
async def floor_build(phases: dict[str, list[str]], deps: dict[str, list[str]]) -> float:
    """Returns the inner wall time (from the first subflow's start to the last's end)."""
    run = uuid.uuid4().hex
    loop = asyncio.get_running_loop()
    _FUTURES.set({r: loop.create_future() for rs in phases.values() for r in rs})
    started_events = {p: asyncio.Event() for p in phases}
    _STARTED.set(started_events)
    starts_done = asyncio.Event()
    _STARTS_DONE.set(starts_done)
    begin = time.perf_counter()
    runs = []
    for phase, roles in phases.items():
        runs.append(asyncio.ensure_future(floor_phase(run, phase, roles, deps)))
        started = asyncio.ensure_future(started_events[phase].wait())
        await asyncio.wait([runs[-1], started], return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
    starts_done.set()
    await asyncio.gather(*runs)
    return time.perf_counter() - begin


def run_floor(plan: Plan) -> tuple[float, float]:
    """(wall of the call, inner wall) of the skeleton of `plan`, as `abuild_app` is called."""
    phases = {p.name: p.roles for p in plan.phases}
    deps = {r: plan.role_deps(r) for r in plan.order}
    started = time.perf_counter()
    inner = asyncio.run(floor_build(phases, deps))
    return time.perf_counter() - started, inner


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
