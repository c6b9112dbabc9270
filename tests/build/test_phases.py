"""How a build starts and ends its phase subflows: all created first, none held at its end.

`Build.start_phases` is driven here with a stand-in for the subflow call that
records what happens in which order, so the contract is checked without a
Prefect server: every subflow exists before any phase's agents run (no
write of the build's can race a subflow's creation), the progress artifact
is not written while they are being created nor while a subflow writes its
final state, a subflow ends as soon as its phase does, and a subflow that
fails to start does not stop the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from blocks.team import default_team
from tasks.agents.errors import UpstreamFailed
from tasks.build.phases import Build, PhaseFailed
from tasks.build.planning import Phase, plan_phases
from tasks.build.progress import Progress
from tasks.build.store import Manifest, Store
from tasks.common.git import EMPTY_TREE


def make_build(tmp_path: Path) -> Build:
    team = default_team()
    idea = "a todo app"
    manifest = Manifest(session="local", idea=idea, team="default", provider="offline",
                        base_commit=None, base_tree=EMPTY_TREE)  # fmt: skip
    return Build(run_id="local", idea=idea, team=team, plan=plan_phases(team), provider="offline",
                 workdir=tmp_path, base_tree=EMPTY_TREE, store=Store(tmp_path),
                 manifest=manifest)  # fmt: skip


class Subflows:
    """Stands in for `run_phase(...)`: a creation, the body's first step, then the phase's work."""

    def __init__(self, build: Build, fail: str | None = None) -> None:
        self.build = build
        self.log: list[tuple[str, str]] = []
        self.release = {p.name: asyncio.Event() for p in build.plan.phases}
        self.fail = fail

    async def start(self, phase: Phase) -> str:
        await asyncio.sleep(0.01)  # the server creating the flow run
        if phase.name == self.fail:
            self.log.append(("failed", phase.name))
            raise RuntimeError(f"could not create phase-{phase.name}")
        self.log.append(("created", phase.name))
        self.build.progress.update(len(self.log))  # an agent landing now must not write yet
        await self.build.phase_running(phase.name)
        self.log.append(("agents", phase.name))
        await self.release[phase.name].wait()
        self.log.append(("ended", phase.name))
        return phase.name

    def index(self, kind: str, phase: str) -> int:
        return self.log.index((kind, phase))


async def wait_for(condition: Callable[[], object], timeout_s: float = 5.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout_s)


async def test_every_subflow_exists_before_any_agent_runs_and_each_ends_with_its_phase(
    tmp_path: Path,
) -> None:
    build = make_build(tmp_path)
    subflows = Subflows(build)
    written: list[int] = []

    async def write(artifact_id: UUID, progress: float, description: str) -> None:
        written.append(len(subflows.log))

    build.progress = Progress(uuid4(), len(build.plan.order), interval_s=0.0, write=write)
    names = [p.name for p in build.plan.phases]
    running = asyncio.ensure_future(build.start_phases(subflows.start, build.plan.phases))

    await wait_for(lambda: sum(kind == "agents" for kind, _ in subflows.log) == len(names))
    last_created = max(subflows.index("created", n) for n in names)
    assert all(subflows.index("agents", n) > last_created for n in names)
    assert [n for kind, n in subflows.log if kind == "created"] == names  # one after another
    await wait_for(lambda: written)
    assert min(written) > last_created  # the progress artifact waited for the last creation

    subflows.release[names[0]].set()  # planning is done while every other phase still runs
    await wait_for(lambda: ("ended", names[0]) in subflows.log)
    assert not any(kind == "ended" for kind, n in subflows.log if n != names[0])

    for name in names[1:]:
        subflows.release[name].set()
    assert await running == names


async def test_no_progress_write_while_a_subflow_writes_its_final_state(tmp_path: Path) -> None:
    build = make_build(tmp_path)
    names = [p.name for p in build.plan.phases]
    ending = False  # the first subflow's final state is being written (by Prefect, after return)
    writes: list[tuple[bool, str]] = []
    others = asyncio.Event()

    async def write(artifact_id: UUID, progress: float, description: str) -> None:
        writes.append((ending, description))

    async def start(phase: Phase) -> str:
        nonlocal ending
        await build.phase_running(phase.name)
        if phase.name != names[0]:
            await others.wait()
            return phase.name
        build.progress.update(1)
        await wait_for(lambda: writes)
        await build.phase_ending(phase.name)  # run_phase's last step
        ending = True
        build.progress.update(2)  # an agent of a later phase lands meanwhile
        await asyncio.sleep(0.05)
        ending = False
        return phase.name

    build.progress = Progress(uuid4(), len(build.plan.order), interval_s=0.0, write=write)
    running = asyncio.ensure_future(build.start_phases(start, build.plan.phases))
    await wait_for(lambda: len(writes) == 2)  # the second, once the first subflow has ended
    assert writes == [(False, f"1 of {len(build.plan.order)} agents done"),
                      (False, f"2 of {len(build.plan.order)} agents done")]  # fmt: skip
    others.set()
    assert await running == names


async def test_a_subflow_that_fails_to_start_does_not_hold_the_others(tmp_path: Path) -> None:
    build = make_build(tmp_path)
    names = [p.name for p in build.plan.phases]
    subflows = Subflows(build, fail=names[2])
    for event in subflows.release.values():
        event.set()
    outcomes = await build.start_phases(subflows.start, build.plan.phases)
    assert [o if isinstance(o, str) else "error" for o in outcomes] == [
        n if n != names[2] else "error" for n in names
    ]
    assert str(outcomes[2]) == f"could not create phase-{names[2]}"
    assert subflows.index("agents", names[0]) > subflows.index("created", names[-1])
    # Its agents will never run: an agent reading one fails at once instead of waiting
    # forever, and so does the next phase's commit, which waits for this phase's.
    failed = build.plan.phases[2]
    reader = next(r for p in build.plan.phases[3:] for r in p.roles
                  if set(build.plan.role_deps(r)) & set(failed.roles))  # fmt: skip
    with pytest.raises(UpstreamFailed):
        await asyncio.wait_for(build.run_role(reader), 1.0)
    assert build.manifest.agents[failed.roles[0]].status == "skipped"
    assert "could not create phase-" in (build.manifest.agents[failed.roles[0]].error or "")
    with pytest.raises(PhaseFailed, match="an earlier phase failed"):
        await asyncio.wait_for(build.finish_phase(names[3], []), 1.0)


async def test_a_phase_that_runs_alone_does_not_wait(tmp_path: Path) -> None:
    build = make_build(tmp_path)
    planning = build.plan.phases[0]
    build.no_starts_pending()  # the approval gate runs planning on its own first
    await asyncio.wait_for(build.phase_running(planning.name), 1.0)
