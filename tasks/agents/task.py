"""The agent task: one Prefect task run per agent, with its tool loop inside.

One task per agent (not per request or tool call) keeps orchestration cost
near the floor. The task's only effect is its return value, an
`AgentOutput` holding the files it wrote: that is what makes it cacheable
across runs and workdirs, safe to run concurrently, and safe to re-run.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.context import TaskRunContext
from prefect.utilities.annotations import quote

from tasks.agents.job import AgentJob
from tasks.agents.loop import run_tool_loop
from tasks.agents.output import AgentOutput


def _job_cache_key(_: TaskRunContext, parameters: dict[str, Any]) -> str:
    job = parameters["job"]
    if isinstance(job, quote):  # the scheduler passes the job quoted (see tasks.build.phases)
        job = job.unquote()
    return str(job.cache_key())


@task(
    name="agent",
    task_run_name="{job.role.id}",
    cache_key_fn=_job_cache_key,
    persist_result=True,
    retries=0,  # transient faults are retried per request in tasks.model.client; see its docstring
)
async def run_agent(job: AgentJob) -> AgentOutput:
    """Run one agent's tool loop to its `submit`, and return what it produced."""
    return await run_tool_loop(job)
