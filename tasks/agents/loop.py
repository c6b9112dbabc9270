"""An agent's tool loop: ask the model, run the tools it calls, until it submits.

Turns and tokens are bounded, the budget is checked before every call, and a
model that stops without submitting is reminded once. Tool errors go back to
the model as error results, so it can correct itself; each is logged as a
warning and counted in the output's `refused`, so an agent whose writes were
all refused does not pass for one that did its work.

Every request re-sends the whole conversation, so each one marks its last
block as a prompt-cache breakpoint (and keeps the previous request's, where
that one wrote its entry): turn k reads turns 1..k-1 from the cache and
pays full price only for what is new. Before its first request an agent may
wait for the team's shared prefix to be warmed (`tasks.model.warmup`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from anthropic.types import Message

from blocks.team import Role
from tasks.agents.errors import AgentError, ToolError
from tasks.agents.job import AgentJob
from tasks.agents.output import AgentOutput, Refusal
from tasks.agents.prompts import pointer_message, system_prompt, tools_for
from tasks.agents.tools import AgentView, Limits, Submission, call_tool
from tasks.common.logs import run_logger
from tasks.common.retry import Backoff
from tasks.common.secrets import redact
from tasks.model import warmup
from tasks.model.budget import call_estimate, current_budget
from tasks.model.caching import estimate_tokens
from tasks.model.client import get_client
from tasks.model.endpoint import current_endpoint
from tasks.model.pricing import Usage, cost_usd
from tasks.model.stream import MODEL_BACKOFF, ModelRequest, PromptCaching, stream_message


def first_request(job: AgentJob) -> ModelRequest:
    """The agent's first model request: shared prefix, role, pointer, cache breakpoints."""
    settings = job.settings
    caching = None
    if settings.prompt_caching:
        caching = PromptCaching(shared_blocks=1, shared_ttl=settings.shared_prefix_ttl)
    return ModelRequest(
        model=settings.model,
        system=system_prompt(job.role, job.idea),
        messages=[{"role": "user", "content": pointer_message(job.role)}],
        tools=tools_for(job.result_schema),
        max_tokens=settings.max_tokens,
        timeout_s=settings.timeout_s,
        caching=caching,
        # The offline model is no API: no fleet limit applies to it.
        tier=job.role.tier if job.provider != "offline" else "",
    )


def shared_prefix_key(job: AgentJob) -> str | None:
    """Which shared prompt prefix the agent starts on, if it is warmed (None: never)."""
    if not job.settings.warm_up:
        return None
    return warmup.prefix_key(current_endpoint(job.provider), first_request(job))


async def run_tool_loop(job: AgentJob, backoff: Backoff = MODEL_BACKOFF) -> AgentOutput:
    """Run the job's agent to its `submit`; AgentError if it cannot get there."""
    role, settings = job.role, job.settings
    started = time.perf_counter()
    endpoint = current_endpoint(job.provider)
    client = get_client(endpoint)
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
        protected_dirs=job.protected_dirs,
    )
    usage = Usage()
    cost, uncached_cost = 0.0, 0.0  # summed per request: a request's rate may depend on its size
    request = first_request(job)
    messages = request.messages
    prefix = warmup.prefix_key(endpoint, request) if settings.warm_up else None
    nudged = False

    def count_request() -> None:
        usage.requests += 1

    budget = current_budget() if job.provider != "offline" else None
    refused: list[Refusal] = []
    last_tool_error = ""
    await warmup.before_first_request(
        client, request, prefix, provider=job.provider, who=f"agent {role.id}"
    )
    for turn in range(settings.max_turns):
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
            this_call = Usage.of(reply)
            reply_cost = cost_usd(settings.model, this_call, job.provider)
        finally:
            if budget:
                budget.settle(hold, reply_cost)
        if turn == 0:
            warmup.saw(prefix, settings.shared_prefix_ttl, reply)
        usage.add(this_call)
        cost += reply_cost
        uncached_cost += cost_usd(settings.model, this_call.without_cache(), job.provider)
        if usage.total_tokens > settings.max_agent_tokens:
            raise AgentError(
                f"agent {role.id} used {usage.total_tokens} tokens, over its cap of "
                f"{settings.max_agent_tokens}; raise max_agent_tokens in the team, or narrow "
                "the role's instructions"
            )
        if request.caching is not None:  # the next request reads what this one wrote
            request.caching.history = len(messages)
        messages.append(
            {
                "role": "assistant",
                "content": [b.model_dump(exclude_none=True) for b in reply.content],
            }
        )
        results, submission = await _run_tools(view, reply, role.id, refused)
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
                refused=refused,
                usage=usage,
                model=settings.model,
                provider=job.provider,
                cost_usd=round(cost, 8),
                uncached_cost_usd=round(uncached_cost, 8),
                duration_s=round(time.perf_counter() - started, 4),
                cache_key=job.cache_key(),
            )
            run_logger("agentmill.agent").info(
                "agent %s submitted: %d files, %d tokens, $%.4f, %d tool calls refused",
                role.id, len(output.files), usage.total_tokens, output.cost_usd, len(refused),
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
    view: AgentView, reply: Message, role_id: str, refused: list[Refusal]
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
            refused.append(_refusal(role_id, block.name, block.input, exc))
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


def _refusal(role_id: str, tool: str, args: Any, exc: ToolError) -> Refusal:
    """Record and log a refused call; what the model chose (path, reason) is redacted first."""
    path = args.get("path") if isinstance(args, dict) else None
    refusal = Refusal(
        tool=tool, path=redact(path)[:300] if isinstance(path, str) else "",
        reason=redact(str(exc))[:500],
    )  # fmt: skip
    run_logger("agentmill.agent").warning(
        "agent %s: %s refused for %r: %s", role_id, tool, refusal.path, refusal.reason
    )
    return refusal


def pointer_tokens(role: Role) -> int:
    """Tokens injected into an agent's context before it asks for anything."""
    return estimate_tokens(pointer_message(role))
