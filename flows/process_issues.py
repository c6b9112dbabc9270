"""process_issues: the open GitHub issues with a label in, one reviewed pull request each out.

Needs: a GitHub token (GITHUB_TOKEN, or a GitHubCredentials block named with
`--credentials`) with contents, issues and pull-request write access; the API
from the block, GITHUB_API_URL or the public API. For Claude, ANTHROPIC_API_KEY
or an AnthropicCredentials block (`--anthropic-credentials`); without a key the
offline model writes placeholder code.

    python -m flows.process_issues --repo OWNER/NAME --label agent:ready \\
        --concurrency 3 --clone-dir work/

Issues run as `resolve_issue` subflows, at most `concurrency` at a time, each
reported the moment it finishes; one failing does not stop the others. Run it
again and nothing is opened twice: an issue whose branch has an open PR is
skipped (or, with `existing_pr="update"`, worked again and its PR updated).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.context import FlowRunContext
from pydantic import BaseModel, Field, SecretStr, field_validator

from flows.resolve_issue import ExistingPR, IssueRun, active_issue_run, resolve_issue
from tasks.common.aio import run_coroutine
from tasks.common.logs import run_logger
from tasks.common.workspace import workspace_lock
from tasks.issues.checks import scanning_for
from tasks.issues.clone import GitAuth, branch_for, open_clone
from tasks.issues.github import REPO_PATTERN, EtagCache, GitHub, Issue, resolve_github
from tasks.issues.report import IssueResult, IssuesSummary, ProgressReporter
from tasks.model.client import Endpoint, ProviderChoice, resolve_endpoint, use_endpoint

MAX_CONCURRENCY = 32


class IssuesRequest(BaseModel):
    """What to work on and how. Validated before any request is made."""

    repo: str = Field(description="OWNER/NAME of the repository.")
    label: str = Field(default="agent:ready", min_length=1)
    concurrency: int = Field(default=3, ge=1, le=MAX_CONCURRENCY)
    clone_dir: Path = Path("work")
    credentials: str | None = None
    provider: ProviderChoice = "auto"
    anthropic_credentials: str | None = None
    review_threshold: int = Field(default=80, ge=0, le=100)
    existing_pr: ExistingPR = "skip"

    @field_validator("repo")
    @classmethod
    def _owner_slash_name(cls, repo: str) -> str:
        repo = repo.strip()
        if not REPO_PATTERN.match(repo):
            raise ValueError(f"{repo!r} is not a repository; pass it as OWNER/NAME")
        return repo


@flow(name="process_issues", log_prints=True)
def process_issues(
    repo: str,
    label: str = "agent:ready",
    concurrency: int = 3,
    clone_dir: str = "work",
    credentials: str | None = None,
    provider: ProviderChoice = "auto",
    anthropic_credentials: str | None = None,
    review_threshold: int = 80,
    existing_pr: ExistingPR = "skip",
) -> IssuesSummary:
    """Work every open issue of `repo` labelled `label` into a reviewed pull request.

    Args:
        repo: The repository, as OWNER/NAME.
        label: Only open issues with this label are worked.
        concurrency: How many issues are worked at the same time.
        clone_dir: Where the clone and the per-issue worktrees live.
        credentials: A GitHubCredentials block name; default GITHUB_TOKEN (and GITHUB_API_URL).
        provider: "auto" (Claude when a key is available, else offline), "anthropic", "offline".
        anthropic_credentials: An AnthropicCredentials block name; default ANTHROPIC_API_KEY.
        review_threshold: Below this review score (0-100) the pull request is a draft.
        existing_pr: When the issue's branch has an open PR: "skip" it, or "update" it.
    """
    request = IssuesRequest(
        repo=repo,
        label=label,
        concurrency=concurrency,
        clone_dir=Path(clone_dir),
        credentials=credentials,
        provider=provider,
        anthropic_credentials=anthropic_credentials,
        review_threshold=review_threshold,
        existing_pr=existing_pr,
    )
    return run_coroutine(_process(request))


async def _process(request: IssuesRequest) -> IssuesSummary:
    log = run_logger("agentmill.process_issues")
    flow_ctx = FlowRunContext.get()
    run_id = str(flow_ctx.flow_run.id) if flow_ctx and flow_ctx.flow_run else "local"
    auth = resolve_github(request.credentials)
    endpoint = resolve_endpoint(request.provider, request.anthropic_credentials)
    _announce(endpoint, log)
    owner, name = request.repo.split("/")
    root = request.clone_dir.resolve()
    cache = EtagCache(root / ".agentmill" / f"github-etags-{owner}-{name}.json")
    started = time.perf_counter()
    async with GitHub(auth, cache=cache) as gh:
        repository = await gh.get_repo(request.repo)
        issues = await gh.list_issues(request.repo, request.label)
        cache.save()
        log.info(
            "%d open issue(s) labelled %r in %s (%d GitHub request(s), %d not modified)",
            len(issues), request.label, request.repo, gh.stats.requests, gh.stats.not_modified,
        )  # fmt: skip
        results: list[IssueResult] = []
        reporter = ProgressReporter(request.repo, len(issues))
        if issues:
            clone_path = root / owner / name
            with workspace_lock(clone_path.with_name(name + ".worktrees"), run_id):
                clone = await open_clone(
                    repository.clone_url,
                    clone_path,
                    GitAuth(repository.clone_url, auth.token),
                    repository.default_branch,
                )
                run = IssueRun(
                    run_id=run_id,
                    repo=request.repo,
                    repository=repository,
                    gh=gh,
                    clone=clone,
                    provider=endpoint.provider,
                    review_threshold=request.review_threshold,
                    existing_pr=request.existing_pr,
                )
                await reporter.start()
                with (
                    use_endpoint(endpoint),
                    active_issue_run(run),
                    scanning_for(_own_secrets(auth.token, endpoint)),
                ):
                    results = await _work(run, issues, request.concurrency, reporter, started)
        cache.save()
    summary = IssuesSummary(
        repo=request.repo,
        label=request.label,
        run_id=run_id,
        provider=endpoint.provider,
        concurrency=request.concurrency,
        wall_s=round(time.perf_counter() - started, 3),
        issues=results,
    )
    await reporter.finish(summary)
    return summary


async def _work(
    run: IssueRun,
    issues: list[Issue],
    concurrency: int,
    reporter: ProgressReporter,
    clock: float,
) -> list[IssueResult]:
    """Every issue as a subflow, at most `concurrency` at once; each reported when it ends.

    Subflows start one after another (each once the previous one is running),
    then run side by side: creating many flow runs at the same instant makes a
    SQLite-backed Prefect server answer "database is locked" and back off.
    """
    slots = asyncio.Semaphore(concurrency)

    async def one(index: int, issue: Issue) -> IssueResult:
        if index > 0:
            await run.wait_started(issues[index - 1].number)
        async with slots:
            began = time.perf_counter()
            try:
                result = await resolve_issue(issue=issue, repo=run.repo)
            except Exception as exc:  # one issue's failure is its own; the others go on
                run.mark_started(issue.number)
                result = _failed(run, issue, exc)
            result.started_s = round(began - clock, 3)
            result.duration_s = round(time.perf_counter() - began, 3)
        await reporter.report(result)
        return result

    return list(await asyncio.gather(*(one(i, issue) for i, issue in enumerate(issues))))


def _failed(run: IssueRun, issue: Issue, exc: BaseException) -> IssueResult:
    tally = run.tally(issue.number)
    return IssueResult(
        number=issue.number,
        title=issue.title,
        status="failed",
        branch=branch_for(issue.number),
        tokens=tally.tokens,
        cost_usd=round(tally.cost_usd, 6),
        agents=tally.agents,
        cached_agents=tally.cached,
        error=f"{type(exc).__name__}: {exc}"[:1000],
    )


def _own_secrets(token: SecretStr, endpoint: Endpoint) -> list[str]:
    """This run's credentials, for the secret scan to catch should an agent write one."""
    keys = [token, endpoint.api_key]
    return [k.get_secret_value() for k in keys if k is not None]


def _announce(endpoint: Endpoint, log: Any) -> None:
    if endpoint.provider == "offline":
        log.warning(
            "OFFLINE MODEL: no Anthropic API key, so the issue team runs on agentmill's "
            "scripted offline model and writes placeholder code, not real changes. Set "
            "ANTHROPIC_API_KEY (or --anthropic-credentials BLOCK) to work issues with Claude."
        )
    else:
        log.info("provider anthropic at %s", endpoint.base_url or "the public API")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flows.process_issues",
        description="Work labelled GitHub issues into reviewed pull requests with Claude agents.",
    )
    parser.add_argument("--repo", required=True, help="the repository, as OWNER/NAME")
    parser.add_argument("--label", default="agent:ready", help="work open issues with this label")
    parser.add_argument("--concurrency", type=int, default=3, help="issues worked at once")
    parser.add_argument("--clone-dir", default="work", help="where the clone and worktrees live")
    parser.add_argument("--credentials", help="GitHubCredentials block name (default GITHUB_TOKEN)")
    parser.add_argument(
        "--provider",
        choices=["auto", "anthropic", "offline"],
        default="auto",
        help="auto: Claude when a key is set, else the offline model",
    )
    parser.add_argument(
        "--anthropic-credentials", help="AnthropicCredentials block name (default the env key)"
    )
    parser.add_argument(
        "--review-threshold", type=int, default=80, help="below this score the PR is a draft"
    )
    parser.add_argument(
        "--existing-pr",
        choices=["skip", "update"],
        default="skip",
        help="an issue whose branch has an open PR: skip it, or work it again and update the PR",
    )
    args = parser.parse_args(argv)
    try:
        IssuesRequest(repo=args.repo, label=args.label, concurrency=args.concurrency)
    except ValueError as exc:
        parser.error(str(exc))
    summary = process_issues(
        repo=args.repo,
        label=args.label,
        concurrency=args.concurrency,
        clone_dir=args.clone_dir,
        credentials=args.credentials,
        provider=args.provider,
        anthropic_credentials=args.anthropic_credentials,
        review_threshold=args.review_threshold,
        existing_pr=args.existing_pr,
    )
    print(summary.line())
    for result in summary.issues:
        where = result.pr_url or result.error or ""
        print(f"  #{result.number} {result.status}: {where}")
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
