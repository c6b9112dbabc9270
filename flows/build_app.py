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
import contextvars
import sys
import time
import unicodedata
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from prefect import flow
from prefect.artifacts import acreate_markdown_artifact
from prefect.context import FlowRunContext
from pydantic import BaseModel, Field, field_validator

from blocks.team import AgentTeam, default_team
from flows.run_phase import run_phase
from tasks.dataflow import Build, active_build
from tasks.git import head_commit, open_repo, tree_of
from tasks.llm import Endpoint, ProviderChoice, aresolve_endpoint, get_client, use_endpoint
from tasks.logs import run_logger
from tasks.metrics import (
    AgentReport,
    CommitRecord,
    RunMetrics,
    RunReport,
    report_markdown,
    summarise,
)
from tasks.planning import plan_phases
from tasks.store import Manifest, Store, now_iso
from tasks.timeline import render_timeline
from tasks.workspace import workspace_lock

MAX_IDEA_CHARS = 20_000
T = TypeVar("T")


class BuildRequest(BaseModel):
    """What to build, where, with whom. Validated before anything touches the disk."""

    idea: str = Field(description="What to build, in a sentence or a page.")
    workdir: Path = Field(description="Where the repository is (created if missing).")
    team: str = Field(default="default", description="'default' or an AgentTeam block name.")
    provider: ProviderChoice = "auto"
    credentials: str | None = Field(default=None, description="AnthropicCredentials block name.")
    budget_usd: float | None = Field(default=None, gt=0)
    fresh: bool = Field(default=False, description="Start from HEAD, not from the manifest's base.")

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


@flow(name="build_app", log_prints=True)
def build_app(
    idea: str,
    workdir: str = "out/app",
    team: str = "default",
    provider: ProviderChoice = "auto",
    budget_usd: float | None = None,
    fresh: bool = False,
    credentials: str | None = None,
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
    """
    request = BuildRequest(
        idea=idea,
        workdir=Path(workdir),
        team=team,
        provider=provider,
        budget_usd=budget_usd,
        fresh=fresh,
        credentials=credentials,
    )
    return _run_coroutine(_build(request))


@flow(name="build_app", log_prints=True)
async def abuild_app(
    idea: str,
    workdir: str = "out/app",
    team: str = "default",
    provider: ProviderChoice = "auto",
    budget_usd: float | None = None,
    fresh: bool = False,
    credentials: str | None = None,
) -> BuildResult:
    """`build_app` for async callers: `await abuild_app(idea=...)`; the same flow and result.

    The command line runs this one: an async flow ends when its work ends,
    without the sync flow's wait for its heartbeat thread (see the module doc).
    """
    request = BuildRequest(
        idea=idea,
        workdir=Path(workdir),
        team=team,
        provider=provider,
        budget_usd=budget_usd,
        fresh=fresh,
        credentials=credentials,
    )
    return await _build(request)


def _run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """Run the async build from this sync flow, whether or not a loop is already running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    context = contextvars.copy_context()  # keeps the flow-run context: subflows keep their parent
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(context.run, asyncio.run, coro).result()


async def _build(request: BuildRequest) -> BuildResult:
    log = run_logger("agentmill.build_app")
    flow_ctx = FlowRunContext.get()
    run_id = str(flow_ctx.flow_run.id) if flow_ctx and flow_ctx.flow_run else "local"
    endpoint = await aresolve_endpoint(request.provider, request.credentials)
    _announce(endpoint, log)
    team = await load_team(request.team)
    plan = plan_phases(team)
    workdir = request.workdir.resolve()
    repo = open_repo(workdir)
    store = Store(workdir)
    with workspace_lock(workdir, run_id), use_endpoint(endpoint):
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
        warm = asyncio.ensure_future(_warm_client(endpoint))
        with active_build(build):
            outcomes = await build.start_phases(
                lambda phase: run_phase(phase=phase.name, roles=phase.roles)
            )
        wall = time.perf_counter() - started
        await warm
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        manifest.status = "failed" if failures else "completed"
        manifest.finished_at = now_iso()
        store.save_manifest(manifest)
        result = await _report(build, wall, request, endpoint)
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
    args = parser.parse_args(argv)
    try:
        BuildRequest(idea=args.idea, workdir=Path(args.workdir))
    except ValueError as exc:
        parser.error(str(exc))
    result = asyncio.run(
        abuild_app(
            idea=args.idea,
            workdir=args.workdir,
            team=args.team,
            provider=args.provider,
            budget_usd=args.budget_usd,
            fresh=args.fresh,
            credentials=args.credentials,
        )
    )
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
