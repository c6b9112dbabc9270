"""Which Prefect run this is: the id that ties commits, events and reports to the run."""

from __future__ import annotations

from prefect.context import FlowRunContext


def flow_run_id() -> str:
    """The current flow run's id, or "local" when the code runs outside any flow."""
    context = FlowRunContext.get()
    return str(context.flow_run.id) if context and context.flow_run else "local"
