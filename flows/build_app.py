"""build_app: an idea in, a git repository with one commit per phase out.

Needs: nothing for the offline model; for Claude, an AnthropicCredentials
block (named by the `credentials` parameter, default `anthropic`, loaded when
the run starts) or ANTHROPIC_API_KEY. A team other than
the built-in one is an AgentTeam block (the `team` parameter). The parameters
are defined once, in `BuildRequest`.

    python -m flows.build_app "A todo app with React and FastAPI" --workdir out/todo

Two entry points, one flow (same name, same parameters, same run): `build_app`
for sync callers and deployments, `abuild_app` for async callers and the
command line. A sync Prefect flow joins its heartbeat thread at exit, and that
thread sleeps in whole seconds, so a sync call ends up to a second after its
work (0.5 s on average); the async flow has no such wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
import unicodedata
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from prefect import Flow
from prefect.artifacts import acreate_markdown_artifact, acreate_progress_artifact
from prefect.context import FlowRunContext
from prefect.flow_runs import apause_flow_run
from pydantic import BaseModel, Field, field_validator

from blocks.team import AgentTeam
from flows.run_phase import run_phase
from tasks.agents.watch import tell
from tasks.build.approval import PlanReview, review_text
from tasks.build.commit import recover_interrupted_phase, refuse_moved_head
from tasks.build.offline_script import build_reply
from tasks.build.phases import ACTIVE_BUILD, Build
from tasks.build.planning import Phase, Plan, aload_team, plan_phases
from tasks.build.remote import RemoteBuild, clone_for_build, git_token
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
from tasks.build.verify import Verification
from tasks.build.watch import BUILD_WATCHER, BuildWatcher
from tasks.common.aio import run_coroutine
from tasks.common.credentials import DEFAULT_ANTHROPIC_BLOCK
from tasks.common.errors import AgentmillError
from tasks.common.git import head_commit, open_repo, refuse_unsafe_state, tree_of
from tasks.common.logs import run_logger
from tasks.common.parameters import (
    CheckedFlow,
    validate,
    with_parameters,
)
from tasks.common.remote import BranchName, GitAuth, RemoteUrl
from tasks.common.runs import flow_run_id
from tasks.common.secrets import scanning_for
from tasks.common.workspace import prepare_workdir, workspace_lock
from tasks.model.budget import Budget, BudgetExhausted, use_budget
from tasks.model.client import get_client
from tasks.model.endpoint import (
    Endpoint,
    ProviderChoice,
    announce,
    aresolve_endpoint,
    use_endpoint,
)
from tasks.model.warmup import RUN_WARMUPS, WarmUps

MAX_IDEA_CHARS = 20_000
# The command line's exit code for "built and committed, but the project's checks fail".
CHECKS_FAILED = 4
APPROVAL_TIMEOUT_S = 24 * 3600  # a plan may wait a day for its reviewer
# What the offline model writes, as the log and the report say it.
OFFLINE_WORK = "placeholder documents, not a real app"


class BuildRequest(BaseModel):
    """build_app's parameters: the one definition for the UI form, the CLI and Python."""

    idea: str = Field(description="What to build, in a sentence or a page.")
    workdir: str = Field(
        default="out/app", description="The git repository to build in; created if missing."
    )
    repo_url: RemoteUrl = Field(
        default=None,
        description="Build on this git remote instead of workdir (a bare repository path, or "
        "an https URL; its token from git_credentials or GITHUB_TOKEN): clone it into "
        "scratch_dir, push each phase commit to `branch` as it lands.",
    )
    branch: BranchName = Field(
        default="agentmill/build",
        description="With repo_url: the branch the phase commits are pushed to (a new branch "
        "starts from the remote's default branch).",
    )
    scratch_dir: str | None = Field(
        default=None,
        description="With repo_url: where this run's clone goes (default: the system's temp "
        "directory); it is removed at the end.",
    )
    git_credentials: str | None = Field(
        default=None,
        description="With an https repo_url: a GitHubCredentials block to take the token from, "
        "not GITHUB_TOKEN.",
    )
    team: str = Field(
        default="default",
        description="'default' (the built-in 32-role team) or the name of an AgentTeam block.",
    )
    provider: ProviderChoice = Field(
        default="auto",
        description="auto: Claude when a key is available (ANTHROPIC_API_KEY or credentials), "
        "else the offline model; or anthropic, or offline.",
    )
    budget_usd: float | None = Field(
        default=None, gt=0, description="Stop before a model call could spend more than this (USD)."
    )
    fresh: bool = Field(
        default=False,
        description="Start from the current HEAD instead of the base recorded in the manifest.",
    )
    credentials: str = Field(
        default=DEFAULT_ANTHROPIC_BLOCK,
        description="The AnthropicCredentials block to take the key from, loaded when the run "
        "starts; if the default one is not saved, ANTHROPIC_API_KEY. Empty: the environment only.",
    )
    install_deps: bool = Field(
        default=False,
        description="Install the generated project's own dependencies before its checks run "
        "(in the sandbox, with the network on).",
    )
    approve_plan: bool = Field(
        default=False,
        description="Pause after planning until a person approves the plan (or asks the PM "
        "for changes) in the Prefect UI.",
    )

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
    verification: Verification
    report_path: str


class BuildFailed(AgentmillError, RuntimeError):
    """Some phases did not commit; those that did stay, and a rerun continues from the cache."""


@with_parameters(BuildRequest)
def _build_app(**params: Any) -> BuildResult:
    """Build an idea with the agent team: phases run concurrently, one commit per phase."""
    return run_coroutine(_build(validate(BuildRequest, params)))


build_app: Flow[..., BuildResult] = CheckedFlow(
    _build_app, model=BuildRequest, name="build_app", log_prints=True
)


@with_parameters(BuildRequest)
async def _abuild_app(**params: Any) -> BuildResult:
    """`build_app` for async callers: `await abuild_app(idea=...)`; the same flow and result.

    The command line runs this one: an async flow ends when its work ends,
    without the sync flow's wait for its heartbeat thread (see the module doc).
    """
    return await _build(validate(BuildRequest, params))


abuild_app: Flow[..., Coroutine[Any, Any, BuildResult]] = CheckedFlow(
    _abuild_app, model=BuildRequest, name="build_app", log_prints=True
)


async def _build(request: BuildRequest) -> BuildResult:
    log = run_logger("agentmill.build_app")
    run_id = flow_run_id()
    endpoint = await aresolve_endpoint(request.provider, request.credentials, build_reply)
    announce(endpoint, log, OFFLINE_WORK)
    team = await aload_team(request.team)
    plan = plan_phases(team)
    remote = await _clone_remote(request)
    try:
        return await _build_in(request, log, run_id, endpoint, team, plan, remote)
    finally:
        if remote is not None:
            remote.remove()  # nothing a later run needs stays in the scratch directory


async def _clone_remote(request: BuildRequest) -> RemoteBuild | None:
    if request.repo_url is None:
        return None
    auth = GitAuth(request.repo_url, await git_token(request.git_credentials))
    scratch = Path(request.scratch_dir) if request.scratch_dir else None
    return await clone_for_build(request.repo_url, request.branch, scratch, auth)


async def _build_in(
    request: BuildRequest,
    log: logging.Logger | logging.LoggerAdapter[Any],
    run_id: str,
    endpoint: Endpoint,
    team: AgentTeam,
    plan: Plan,
    remote: RemoteBuild | None,
) -> BuildResult:
    watcher = BUILD_WATCHER.get()
    workdir = prepare_workdir(remote.path if remote else Path(request.workdir))
    repo = open_repo(workdir)
    store = Store(workdir)
    budget = Budget(request.budget_usd) if request.budget_usd else None
    warmups = WarmUps()  # the run's prompt-cache warm-ups, for its ledger
    own_key = [endpoint.api_key.get_secret_value()] if endpoint.api_key else []
    with (
        workspace_lock(workdir, run_id),
        use_endpoint(endpoint),
        use_budget(budget),
        RUN_WARMUPS.use(warmups),
        scanning_for(own_key),  # the run's own key, in any encoding, never lands
    ):
        recover_interrupted_phase(workdir)
        refuse_unsafe_state(repo)
        previous = store.load_manifest()
        head = head_commit(repo)
        recorded = await remote.recorded_base() if remote and not request.fresh else None
        if recorded is not None:
            base_commit, base_tree = recorded
            log.info("rerun of %s: starting from the recorded base %s", request.repo_url,
                     base_tree[:12])  # fmt: skip
        elif previous is not None and not request.fresh:
            refuse_moved_head(workdir, previous, head)
            base_commit, base_tree = previous.base_commit, previous.base_tree
            log.info("rerun on %s: starting from the recorded base %s", workdir, base_tree[:12])
        else:
            base_commit = head
            base_tree = tree_of(repo, base_commit)
        repo.close()
        manifest = Manifest(
            session=run_id,
            idea=request.idea,
            team=request.team,
            provider=endpoint.provider,
            base_commit=base_commit,
            base_tree=base_tree,
            head=head,
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
            install_deps=request.install_deps,
            observers=(watcher,) if watcher else (),
        )
        if remote is not None:
            recorded_base = base_commit or base_tree
            build.after_commit = lambda sha: remote.push_phase(sha, recorded_base)
        tell(watcher, "planned", build)
        started = time.perf_counter()
        if FlowRunContext.get() is not None:
            build.progress.artifact_id = await acreate_progress_artifact(
                progress=0.0, key="agentmill-progress", description="agents done"
            )
        warm = asyncio.ensure_future(_warm_client(endpoint))
        with ACTIVE_BUILD.use(build):
            phases = plan.phases
            outcomes: list[CommitRecord | BaseException | None] = []
            try:
                if request.approve_plan:
                    outcomes.append(await _plan_until_approved(build))
                    phases = plan.phases[1:] if outcomes[0] is None else []
                outcomes += await build.start_phases(
                    lambda phase: _run_phase(phase, watcher), phases
                )
            finally:
                await build.progress.flush()  # the final count; no write left in flight
        wall = time.perf_counter() - started
        await warm
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        manifest.status = "failed" if failures else "completed"
        manifest.finished_at = now_iso()
        store.save_manifest(manifest)
        result = await _report(build, wall, request, endpoint, warmups)
    if failures and budget is not None and budget.exhausted:
        committed = ", ".join(c.phase for c in build.commits) or "none"
        raise BudgetExhausted(
            f"stopped: the budget of ${budget.limit_usd:.4f} is spent (${budget.spent_usd:.4f} "
            f"spent, ${budget.remaining_usd:.4f} remains); phases committed: {committed}. "
            "Rerun with a larger budget_usd to continue from the cache",
            spent=budget.spent_usd,
            limit=budget.limit_usd,
        )
    if failures:
        raise BuildFailed(
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
            await _run_phase(planning, BUILD_WATCHER.get())
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


async def _run_phase(phase: Phase, watcher: BuildWatcher | None) -> CommitRecord | None:
    """The phase's subflow; a watcher hears how it ended."""
    try:
        record = await run_phase(phase=phase.name, roles=phase.roles)
    except BaseException as exc:
        tell(watcher, "phase_ended", phase.name, None, exc)
        raise
    tell(watcher, "phase_ended", phase.name, record, None)
    return record


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


async def _report(
    build: Build, wall: float, request: BuildRequest, endpoint: Endpoint, warmups: WarmUps
) -> BuildResult:
    agents = build.agent_reports()
    metrics = summarise(
        agents, build.commits, build.agent_deps(), build.report_order(), wall, warmups.by_model()
    )
    report = RunReport(
        run_id=build.run_id,
        idea=request.idea,
        provider=endpoint.provider,
        status=build.manifest.status,
        base_tree=build.base_tree,
        agents=agents,
        commits=build.commits,
        metrics=metrics,
        verification=build.verification,
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
        verification=build.verification,
        report_path=str(path),
    )


def main(argv: list[str] | None = None) -> int:
    """`python -m flows.build_app`: the same command as `agentmill build` (tasks.cli.build)."""
    from tasks.cli.build import main as build_main  # the CLI imports this module

    return build_main(argv, prog="python -m flows.build_app")


if __name__ == "__main__":
    sys.exit(main())
