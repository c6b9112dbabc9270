"""An agent's tool loop: ask the model, run the tools it calls, until it submits.

Turns and tokens are bounded, the budget is checked before every call, and a
model that stops without submitting is reminded once. Tool errors go back to
the model as error results, so it can correct itself.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from anthropic.types import Message

from blocks.team import Role
from tasks.agents.errors import AgentError, ToolError
from tasks.agents.job import AgentJob
from tasks.agents.output import AgentOutput
from tasks.agents.prompts import estimate_tokens, pointer_message, system_prompt, tools_for
from tasks.agents.tools import AgentView, Limits, Submission, call_tool
from tasks.common.logs import run_logger
from tasks.common.retry import Backoff
from tasks.model.budget import call_estimate, current_budget
from tasks.model.client import get_client
from tasks.model.endpoint import current_endpoint
from tasks.model.pricing import Usage, cost_usd
from tasks.model.stream import MODEL_BACKOFF, ModelRequest, stream_message


async def run_tool_loop(job: AgentJob, backoff: Backoff = MODEL_BACKOFF) -> AgentOutput:
    """Run the job's agent to its `submit`; AgentError if it cannot get there."""
    role, settings = job.role, job.settings
    started = time.perf_counter()
    client = get_client(current_endpoint(job.provider))
    view = AgentView(
        workdir=Path(job.workdir),
        base_tree=job.base_tree,
        brief=job.brief(),
        upstream=job.upstream,
        limits=Limits(
            max_file_bytes=settings.max_file_bytes,
            max_files=settings.max_files,
            run_timeout_s=settings.run_timeout_s,
        ),
        result_schema=job.result_schema,
    )
    usage = Usage()
    messages: list[dict[str, Any]] = [{"role": "user", "content": pointer_message(role)}]
    request = ModelRequest(
        model=settings.model,
        system=system_prompt(role),
        messages=messages,
        tools=tools_for(job.result_schema),
        max_tokens=settings.max_tokens,
        timeout_s=settings.timeout_s,
        # The offline model is no API: no fleet limit applies to it.
        tier=role.tier if job.provider != "offline" else "",
    )
    nudged = False

    def count_request() -> None:
        usage.requests += 1

    budget = current_budget() if job.provider != "offline" else None
    last_tool_error = ""
    for _turn in range(settings.max_turns):
        hold = budget.reserve(f"agent {role.id}", call_estimate(request)) if budget else 0
        reply_cost = 0.0
        try:
            reply = await stream_message(
                client,
                request,
                backoff=backoff,
                who=f"agent {role.id}",
                on_attempt=count_request,
            )
            this_call = Usage()
            this_call.add_message(reply)
            reply_cost = cost_usd(settings.model, this_call, job.provider)
        finally:
            if budget:
                budget.settle(hold, reply_cost)
        usage.add_message(reply)
        if usage.total_tokens > settings.max_agent_tokens:
            raise AgentError(
                f"agent {role.id} used {usage.total_tokens} tokens, over its cap of "
                f"{settings.max_agent_tokens}; raise max_agent_tokens in the team, or narrow "
                "the role's instructions"
            )
        messages.append(
            {
                "role": "assistant",
                "content": [b.model_dump(exclude_none=True) for b in reply.content],
            }
        )
        results, submission = await _run_tools(view, reply)
        errors = [r["content"] for r in results if r.get("is_error")]
        last_tool_error = errors[-1] if errors else last_tool_error
        if submission is not None:
            output = AgentOutput(
                role=role.id,
                summary=submission.summary,
                decisions=submission.decisions,
                files=dict(view.changes),
                next_steps=submission.next_steps,
                warnings=submission.warnings,
                result=submission.result or {},
                usage=usage,
                model=settings.model,
                provider=job.provider,
                cost_usd=cost_usd(settings.model, usage, job.provider),
                duration_s=round(time.perf_counter() - started, 4),
                cache_key=job.cache_key(),
            )
            run_logger("agentmill.agent").info(
                "agent %s submitted: %d files, %d tokens, $%.4f",
                role.id, len(output.files), usage.total_tokens, output.cost_usd,
            )  # fmt: skip
            return output
        if not results:
            if nudged:
                break
            nudged = True  # the model stopped without submitting: remind it once
            messages.append({"role": "user", "content": "Call submit now to finish your work."})
        else:
            messages.append({"role": "user", "content": results})
    hint = f" (its last tool error: {last_tool_error})" if last_tool_error else ""
    raise AgentError(
        f"agent {role.id} did not submit within {settings.max_turns} turns{hint}; "
        "its instructions may be too broad, or raise max_turns in the team"
    )


async def _run_tools(
    view: AgentView, reply: Message
) -> tuple[list[dict[str, Any]], Submission | None]:
    """Run every tool_use block of a reply (any position, not only the first)."""
    results: list[dict[str, Any]] = []
    submission: Submission | None = None
    for block in reply.content:
        if block.type != "tool_use":
            continue
        try:
            outcome = await call_tool(view, block.name, block.input)
        except ToolError as exc:
            results.append(
                {
                    "type": "tool_result",
                    "tool_use_id": block.id,
                    "content": str(exc),
                    "is_error": True,
                }
            )
            continue
        if isinstance(outcome, Submission):
            submission = outcome
            outcome = "submitted"
        results.append({"type": "tool_result", "tool_use_id": block.id, "content": outcome})
    return results, submission


def pointer_tokens(role: Role) -> int:
    """Tokens injected into an agent's context before it asks for anything."""
    return estimate_tokens(pointer_message(role))
