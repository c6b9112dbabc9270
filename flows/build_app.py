"""build_app: an idea in, a git repository with one commit per phase out.

Needs: nothing for the offline model; for Claude, ANTHROPIC_API_KEY or an
AnthropicCredentials block (`--credentials NAME`). A team other than the
built-in one is an AgentTeam block (`--team NAME`).

    python -m flows.build_app "A todo app with React and FastAPI" --workdir out/todo

Two entry points, one flow (same name, same parameters, same run): `build_app`
for sync callers and deployments, `abuild_app` for async callers and the
command line. A sync Prefect flow joins its heartbeat thread at exit, and that
thread sleeps in whole seconds, so a sync call ends up to a second after its
work (0.5 s on average); the async flow has no such wait.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import sys
import time
import unicodedata
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from prefect import Flow
from prefect.artifacts import acreate_markdown_artifact, acreate_progress_artifact
from prefect.context import FlowRunContext
from prefect.flow_runs import apause_flow_run
from pydantic import BaseModel, Field, field_validator

from blocks.team import AgentTeam, default_team
from flows.run_phase import run_phase
from tasks.build.approval import PlanReview, review_text
from tasks.build.commit import recover_interrupted_phase
from tasks.build.phases import Build, active_build
from tasks.build.planning import plan_phases
from tasks.build.report import (
    AgentReport,
    CommitRecord,
    RunMetrics,
    RunReport,
    report_markdown,
    summarise,
)
from tasks.build.store import Manifest, PhaseEntry, Store, now_iso
from tasks.build.timeline import render_timeline
from tasks.common.aio import run_coroutine
from tasks.common.git import head_commit, open_repo, refuse_unsafe_state, tree_of
from tasks.common.logs import run_logger
from tasks.common.workspace import prepare_workdir, workspace_lock
from tasks.model.budget import Budget, BudgetExhausted, use_budget
from tasks.model.client import Endpoint, ProviderChoice, aresolve_endpoint, get_client, use_endpoint

MAX_IDEA_CHARS = 20_000
APPROVAL_TIMEOUT_S = 24 * 3600  # a plan may wait a day for its reviewer
T = TypeVar("T")
P = ParamSpec("P")
R = TypeVar("R")


class BuildRequest(BaseModel):
    """What to build, where, with whom. Validated before anything touches the disk."""

    idea: str = Field(description="What to build, in a sentence or a page.")
    workdir: Path = Field(description="Where the repository is (created if missing).")
    team: str = Field(default="default", description="'default' or an AgentTeam block name.")
    provider: ProviderChoice = "auto"
    credentials: str | None = Field(default=None, description="AnthropicCredentials block name.")
    budget_usd: float | None = Field(default=None, gt=0)
    fresh: bool = Field(default=False, description="Start from HEAD, not from the manifest's base.")
    approve_plan: bool = Field(default=False, description="Pause for approval after planning.")

    @field_validator("idea")
    @classmethod
    def _idea_is_text(cls, idea: str) -> str:
        idea = idea.strip()
        if not idea:
            raise ValueError("the idea is empty; describe what to build in a sentence or more")
        if len(idea) > MAX_IDEA_CHARS:
            raise ValueError(
                f"the idea is {len(idea)} characters, over {MAX_IDEA_CHARS}; put the long "
                "specification in a file in the workdir and describe it briefly"
            )
        bad = [c for c in idea if unicodedata.category(c) == "Cc" and c not in "\n\t\r"]
        if bad:
            raise ValueError(
                f"the idea holds control characters ({', '.join(repr(c) for c in bad[:3])}); "
                "remove them"
            )
        return idea


class BuildResult(BaseModel):
    run_id: str
    workdir: str
    provider: str
    status: str
    base_tree: str
    commits: list[CommitRecord]
    agents: list[AgentReport]
    metrics: RunMetrics
    report_path: str


async def load_team(name: str) -> AgentTeam:
    if name == "default":
        return default_team()
    try:
        team = await AgentTeam.aload(name)
    except ValueError as exc:
        raise ValueError(
            f"no AgentTeam block named {name!r}; save one with AgentTeam(...).save({name!r}) "
            "or use --team default"
        ) from exc
    assert isinstance(team, AgentTeam)
    return team


class _CheckedFlow(Flow[P, R]):
    """A flow whose request is validated before Prefect creates a run for it.

    Prefect validates parameters only after the run exists, and refuses a
    run whose parameters pass 512 KB; checking first turns an empty or 1 MB
    idea into BuildRequest's message, with nothing created or written.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        call = {k: v for k, v in kwargs.items() if k not in ("return_state", "wait_for")}
        bound = inspect.signature(self.fn).bind(*args, **call)
        bound.apply_defaults()
        _request(**bound.arguments)
        return super().__call__(*args, **kwargs)


def _request(**arguments: Any) -> BuildRequest:
    arguments["workdir"] = Path(arguments["workdir"])
    return BuildRequest(**arguments)


def _build_app(
    idea: str,
    workdir: str = "out/app",
    team: str = "default",
    provider: ProviderChoice = "auto",
    budget_usd: float | None = None,
    fresh: bool = False,
    credentials: str | None = None,
    approve_plan: bool = False,
) -> BuildResult:
    """Build an idea with the agent team: phases run concurrently, one commit per phase.

    Args:
        idea: What to build, in a sentence or a page.
        workdir: The git repository to build in; created if missing.
        team: "default" (the built-in 32-role team) or the name of an AgentTeam block.
        provider: "auto" (Claude when a key is available, else offline), "anthropic", "offline".
        budget_usd: Stop before a model call would spend more than this.
        fresh: Start from the current HEAD instead of the base recorded in the manifest.
        credentials: Name of an AnthropicCredentials block; default ANTHROPIC_API_KEY.
        approve_plan: Pause after planning until a person approves the plan (or asks
            the PM for changes) in the Prefect UI.
    """
    return run_coroutine(_abuild_app(**locals()))


build_app: Flow[..., BuildResult] = _CheckedFlow(fn=_build_app, name="build_app", log_prints=True)


async def _abuild_app(
    idea: str,
    workdir: str = "out/app",
    team: str = "default",
    provider: ProviderChoice = "auto",
    budget_usd: float | None = None,
    fresh: bool = False,
    credentials: str | None = None,
    approve_plan: bool = False,
) -> BuildResult:
    """`build_app` for async callers: `await abuild_app(idea=...)`; the same flow and result.

    The command line runs this one: an async flow ends when its work ends,
    without the sync flow's wait for its heartbeat thread (see the module doc).
    """
    return await _build(_request(**locals()))


abuild_app: Flow[..., Coroutine[Any, Any, BuildResult]] = _CheckedFlow(
    fn=_abuild_app, name="build_app", log_prints=True
)


async def _build(request: BuildRequest) -> BuildResult:
    log = run_logger("agentmill.build_app")
    flow_ctx = FlowRunContext.get()
    run_id = str(flow_ctx.flow_run.id) if flow_ctx and flow_ctx.flow_run else "local"
    endpoint = await aresolve_endpoint(request.provider, request.credentials)
    _announce(endpoint, log)
    team = await load_team(request.team)
    plan = plan_phases(team)
    workdir = prepare_workdir(request.workdir)
    repo = open_repo(workdir)
    store = Store(workdir)
    budget = Budget(request.budget_usd) if request.budget_usd else None
    with workspace_lock(workdir, run_id), use_endpoint(endpoint), use_budget(budget):
        recover_interrupted_phase(workdir)
        refuse_unsafe_state(repo)
        previous = store.load_manifest()
        if previous is not None and not request.fresh:
            base_commit, base_tree = previous.base_commit, previous.base_tree
            log.info("rerun on %s: starting from the recorded base %s", workdir, base_tree[:12])
        else:
            base_commit = head_commit(repo)
            base_tree = tree_of(repo, base_commit)
        repo.close()
        manifest = Manifest(
            session=run_id,
            idea=request.idea,
            team=request.team,
            provider=endpoint.provider,
            base_commit=base_commit,
            base_tree=base_tree,
            # A phase this run finds unchanged still lives in the commit that landed it.
            phases={
                name: PhaseEntry(status="pending", commit=entry.commit)
                for name, entry in (
                    previous.phases.items() if previous and not request.fresh else ()
                )
            },
        )
        store.save_manifest(manifest)
        build = Build(
            run_id=run_id,
            idea=request.idea,
            team=team,
            plan=plan,
            provider=endpoint.provider,
            workdir=workdir,
            base_tree=base_tree,
            store=store,
            manifest=manifest,
        )
        started = time.perf_counter()
        if flow_ctx is not None:
            build.progress_id = await acreate_progress_artifact(
                progress=0.0, key="agentmill-progress", description="agents done"
            )
        warm = asyncio.ensure_future(_warm_client(endpoint))
        with active_build(build):
            phases = plan.phases
            outcomes: list[CommitRecord | BaseException | None] = []
            if request.approve_plan:
                outcomes.append(await _plan_until_approved(build))
                phases = plan.phases[1:] if outcomes[0] is None else []
            outcomes += await build.start_phases(
                lambda phase: run_phase(phase=phase.name, roles=phase.roles), phases
            )
        wall = time.perf_counter() - started
        await warm
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        manifest.status = "failed" if failures else "completed"
        manifest.finished_at = now_iso()
        store.save_manifest(manifest)
        result = await _report(build, wall, request, endpoint)
    if failures and budget is not None and budget.exhausted:
        committed = ", ".join(c.phase for c in build.commits) or "none"
        raise BudgetExhausted(
            f"stopped: the budget of ${budget.limit_usd:.4f} is spent (${budget.spent_usd:.4f} "
            f"spent, ${budget.remaining_usd:.4f} remains); phases committed: {committed}. "
            "Rerun with a larger --budget-usd to continue from the cache",
            spent=budget.spent_usd,
            limit=budget.limit_usd,
        )
    if failures:
        raise RuntimeError(
            f"build failed ({len(failures)} phase(s) not committed); committed phases stay; "
            f"rerun to continue from the cache. First error: {failures[0]}"
        ) from failures[0]
    log.info(
        "built %s: %d commits, %d agents (%d cached), %d model requests, $%.4f, %.1fs",
        workdir, len(build.commits), len(plan.order), result.metrics.cached_agents,
        result.metrics.model_requests, result.metrics.cost_usd, wall,
    )  # fmt: skip
    return result


async def _plan_until_approved(build: Build) -> BaseException | None:
    """Run planning, pause for a person's review, and repeat with their comment until approved.

    The comment reaches the first phase's root roles (the PM) as reviewer
    feedback, which is part of their cache key: the revision really runs.
    """
    log = run_logger("agentmill.build_app")
    planning = build.plan.phases[0]
    build.no_starts_pending()
    while True:
        try:
            await run_phase(phase=planning.name, roles=planning.roles)
        except Exception as exc:
            return exc
        form = PlanReview.with_initial_data(
            description=(
                f"**Review the plan** of build `{build.run_id}` before the other phases run. "
                "Approve, or request changes with a comment for the PM."
            ),
            requirements=review_text(build.outputs_of(planning.name)),
        )
        review = await apause_flow_run(
            wait_for_input=form, timeout=APPROVAL_TIMEOUT_S, poll_interval=2
        )
        if review.decision == "approve":
            log.info("plan approved; building the remaining phases")
            return None
        log.info("changes requested for the plan: %s", review.comment or "(no comment)")
        build.feedback.append(review.comment or "Revise the plan.")
        build.restart_phase(planning.name)


async def _warm_client(endpoint: Endpoint) -> None:
    """Build the pooled model client while the first phase subflow is being created.

    Creating it (an SSL context with the CA bundle) takes 20-40 ms of CPU; the
    first agent would otherwise pay that on the critical path. Yielding once
    first lets the subflow's creation send its request, so this runs while
    the loop waits for the API.
    """
    await asyncio.sleep(0)
    with contextlib.suppress(Exception):  # an agent that needs the client reports it
        get_client(endpoint)


def _announce(endpoint: Endpoint, log: Any) -> None:
    if endpoint.provider == "offline":
        log.warning(
            "OFFLINE MODEL: no Anthropic API key, so the team runs on agentmill's scripted "
            "offline model and writes placeholder documents, not a real app. Set "
            "ANTHROPIC_API_KEY (or --credentials BLOCK) to build with Claude."
        )
    else:
        log.info("provider anthropic at %s", endpoint.base_url or "the public API")


async def _report(
    build: Build, wall: float, request: BuildRequest, endpoint: Endpoint
) -> BuildResult:
    agents = build.agent_reports()
    deps = {r: build.plan.roles[r].depends_on for r in build.plan.order}
    metrics = summarise(agents, build.commits, deps, build.plan.order, wall)
    report = RunReport(
        run_id=build.run_id,
        idea=request.idea,
        provider=endpoint.provider,
        status=build.manifest.status,
        base_tree=build.base_tree,
        agents=agents,
        commits=build.commits,
        metrics=metrics,
    )
    markdown = report_markdown(report)
    svg = render_timeline(
        agents,
        [p.name for p in build.plan.phases],
        metrics.critical_path,
        f"agentmill run {build.run_id} ({endpoint.provider})",
    )
    path = build.store.save_report(report, markdown, svg)
    if FlowRunContext.get() is not None:
        await acreate_markdown_artifact(
            markdown=markdown, key="agentmill-run-report", description="agentmill run report"
        )
    return BuildResult(
        run_id=build.run_id,
        workdir=str(build.workdir),
        provider=endpoint.provider,
        status=build.manifest.status,
        base_tree=build.base_tree,
        commits=build.commits,
        agents=agents,
        metrics=metrics,
        report_path=str(path),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flows.build_app",
        description="Build an idea with a team of Claude agents; one git commit per phase.",
    )
    parser.add_argument("idea", help="what to build, e.g. 'A todo app with React and FastAPI'")
    parser.add_argument(
        "--workdir", default="out/app", help="git repository to build in (default out/app)"
    )
    parser.add_argument("--team", default="default", help="'default' or an AgentTeam block name")
    parser.add_argument(
        "--provider",
        choices=["auto", "anthropic", "offline"],
        default="auto",
        help="auto: Claude when a key is set (ANTHROPIC_API_KEY or --credentials), else offline",
    )
    parser.add_argument("--credentials", help="AnthropicCredentials block name (default: env key)")
    parser.add_argument("--budget-usd", type=float, help="stop before spending more than this")
    parser.add_argument(
        "--fresh", action="store_true", help="start from HEAD, not the base in .tasks/manifest.json"
    )
    parser.add_argument(
        "--approve-plan",
        action="store_true",
        help="pause after planning until the plan is approved in the Prefect UI",
    )
    args = parser.parse_args(argv)
    try:
        BuildRequest(idea=args.idea, workdir=Path(args.workdir))
    except ValueError as exc:
        parser.error(str(exc))
    try:
        result: BuildResult = asyncio.run(
            abuild_app(
                idea=args.idea,
                workdir=args.workdir,
                team=args.team,
                provider=args.provider,
                budget_usd=args.budget_usd,
                fresh=args.fresh,
                credentials=args.credentials,
                approve_plan=args.approve_plan,
            )
        )
    except BudgetExhausted as exc:
        print(f"agentmill: {exc}", file=sys.stderr)
        return 3
    except (ValueError, RuntimeError) as exc:  # our errors say what to fix; no traceback needed
        print(f"agentmill: error: {exc}", file=sys.stderr)
        return 1
    m = result.metrics
    print(
        f"{result.status}: {m.commits} commits in {result.workdir}; {len(result.agents)} agents "
        f"({m.cached_agents} cached), {m.model_requests} model requests, ${m.cost_usd:.4f}, "
        f"wall {m.wall_s:.1f}s (critical path {m.critical_path_s:.1f}s). "
        f"Report: {result.report_path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
