"""The agent task: one Prefect task run per agent, with its tool loop inside.

One task per agent (not per request or tool call) keeps orchestration cost
near the floor. The task's only effect is its return value, an
`AgentOutput` holding the files it wrote: that is what makes it cacheable
across runs and workdirs, safe to run concurrently, and safe to re-run.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from anthropic.types import Message
from prefect import task
from prefect.context import TaskRunContext
from prefect.utilities.annotations import quote
from pydantic import BaseModel, Field

from blocks.team import AgentTeam, Role
from tasks.agents.prompts import (
    PROMPTS_VERSION,
    estimate_tokens,
    pointer_message,
    system_prompt,
    tools_for,
)
from tasks.agents.tools import AgentView, Limits, Submission, ToolError, call_tool
from tasks.common.logs import run_logger
from tasks.model.budget import call_estimate, current_budget
from tasks.model.client import (
    ModelRequest,
    Provider,
    RetryPolicy,
    Usage,
    cost_usd,
    current_endpoint,
    get_client,
    stream_message,
)

# Bump to invalidate every cached agent output at once (e.g. after a change in
# how outputs are built that the other key inputs do not capture).
CACHE_KEY_VERSION = "agentmill-agent-v1"


class AgentError(RuntimeError):
    """An agent could not produce an output; the message names the agent and the cause."""


class AgentSettings(BaseModel):
    """Everything about how the model is called that changes what it returns."""

    model: str
    max_turns: int = 12
    max_tokens: int = 8192
    max_agent_tokens: int = 400_000
    timeout_s: float = 300.0
    max_file_bytes: int = 256_000
    max_files: int = 50


def agent_settings(team: AgentTeam, role: Role) -> AgentSettings:
    """How `role` calls its model in `team`; one place, so every scheduler runs the same agent."""
    return AgentSettings(
        model=team.model_for(role),
        max_turns=team.max_turns,
        max_tokens=team.max_tokens,
        max_agent_tokens=team.max_agent_tokens,
        timeout_s=team.timeout_for(role),
    )


class AgentOutput(BaseModel):
    """What an agent produced, and what it cost. `files` are applied at the phase commit."""

    role: str
    summary: str
    decisions: list[str] = Field(default_factory=list)
    files: dict[str, str] = Field(default_factory=dict)
    next_steps: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    model: str
    provider: Provider
    cost_usd: float = 0.0
    duration_s: float = 0.0
    cache_key: str = ""
    result: dict[str, Any] = Field(
        default_factory=dict,
        description="The structured answer of a role with a result schema (triage, plan, review).",
    )

    def digest(self) -> str:
        """Hash of the content downstream agents can read; usage and timing excluded."""
        content = self.model_dump(
            include={"role", "summary", "decisions", "files", "next_steps", "warnings"}
        )
        if self.result:  # only when present, so digests of plain outputs stay as they were
            content["result"] = self.result
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


class AgentJob(BaseModel):
    """One agent's inputs. Holds no secret and no client, so it can be a task parameter."""

    role: Role
    settings: AgentSettings
    provider: Provider
    idea: str
    base_tree: str
    workdir: str
    feedback: list[str] = Field(
        default_factory=list, description="Reviewers' comments on an earlier plan (approval gate)."
    )
    upstream: list[AgentOutput] = Field(
        default_factory=list,
        description="Outputs of the transitive dependencies, in topological order.",
    )
    result_schema: dict[str, Any] | None = Field(
        default=None,
        description="JSON schema of the structured result `submit` must carry; None for none.",
    )

    def cache_key(self) -> str:
        """A hash of everything the output depends on, and of nothing else.

        In: the role's instructions and prompt version (what it is asked), our
        prompt and tool texts (`PROMPTS_VERSION`), provider, model id and
        sampling settings (who answers and how), the idea, the base tree id and
        the digests of the upstream outputs (everything it can read). Out: the
        flow-run id (a new run must reuse work), the workdir path (a fresh
        workdir restores from the cache), and any key or client (secrets and
        process state have no place in a key that is stored and logged).
        """
        payload = {
            "v": CACHE_KEY_VERSION,
            "prompts": PROMPTS_VERSION,
            "role": self.role.model_dump(
                include={"id", "title", "depends_on", "instructions", "prompt_version"}
            ),
            "provider": self.provider,
            "settings": self.settings.model_dump(),
            "idea": self.idea,
            "base_tree": self.base_tree,
            "feedback": self.feedback,
            "upstream": {o.role: o.digest() for o in self.upstream},
        }
        if self.result_schema is not None:  # what it must answer; absent keeps old keys valid
            payload["result_schema"] = self.result_schema
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:40]

    def brief(self) -> dict[str, Any]:
        """The part of the manifest an agent reads: fixed for the build, so it is in the key."""
        return {
            "idea": self.idea,
            "base_tree": self.base_tree,
            "role": self.role.id,
            "title": self.role.title,
            "phase": self.role.phase,
            "track": self.role.track,
            "dependencies": self.role.depends_on,
            "readable_outputs": [o.role for o in self.upstream],
            **({"reviewer_feedback": self.feedback} if self.feedback else {}),
        }


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


async def run_tool_loop(job: AgentJob, policy: RetryPolicy | None = None) -> AgentOutput:
    role, settings = job.role, job.settings
    started = time.perf_counter()
    client = get_client(current_endpoint(job.provider))
    view = AgentView(
        workdir=Path(job.workdir),
        base_tree=job.base_tree,
        brief=job.brief(),
        upstream=job.upstream,
        limits=Limits(max_file_bytes=settings.max_file_bytes, max_files=settings.max_files),
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
                policy=policy or RetryPolicy(),
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
        results, submission = _run_tools(view, reply)
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


def _run_tools(view: AgentView, reply: Message) -> tuple[list[dict[str, Any]], Submission | None]:
    """Run every tool_use block of a reply (any position, not only the first)."""
    results: list[dict[str, Any]] = []
    submission: Submission | None = None
    for block in reply.content:
        if block.type != "tool_use":
            continue
        try:
            outcome = call_tool(view, block.name, block.input)
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
