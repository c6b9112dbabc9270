"""run_phase: one phase of a build, as a subflow of build_app.

Every phase subflow is created before the first agent runs; then each agent
waits only for its own dependencies (which may sit in an earlier phase's
subflow), the phase's checks run once its agents are done, the phase commits
after the phase before it, and the subflow ends with its commit. Needs: an
active build (run it via build_app).
"""

from __future__ import annotations

import asyncio

from prefect import flow

from blocks.team import checks_id
from tasks.agents.errors import UpstreamFailed
from tasks.build.phases import current_build
from tasks.build.report import CommitRecord


@flow(name="run_phase", flow_run_name="phase-{phase}", log_prints=True)
async def run_phase(phase: str, roles: list[str]) -> CommitRecord | None:
    """Run the phase's agents as their dependencies allow, verify, then make the phase's commit.

    The phase's checks node runs here too, once its agents are done: its
    check tasks and fix agents show under this subflow.
    """
    build = current_build()
    await build.phase_running(phase)  # until every phase subflow exists: see Build.start_phases
    nodes = [*roles, checks_id(phase)]
    results = await asyncio.gather(*(build.run_role(r) for r in nodes), return_exceptions=True)
    # The checks do not run when an agent failed: that agent's error is the phase's.
    errors = [
        r for r in results if isinstance(r, BaseException) and not isinstance(r, UpstreamFailed)
    ] or [r for r in results if isinstance(r, BaseException)]
    try:
        return await build.finish_phase(phase, errors)
    finally:
        await build.phase_ending(phase)  # the progress artifact waits for this run's end
