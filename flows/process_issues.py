"""process_issues: the open GitHub issues with a label in, one reviewed pull request each out.

Needs: a GitHub token with contents, issues and pull-request write access: a
GitHubCredentials block (the `credentials` parameter, default `github`) or
GITHUB_TOKEN; the API from the block, GITHUB_API_URL or the public API. For
Claude, an AnthropicCredentials block (`anthropic_credentials`, default
`anthropic`) or ANTHROPIC_API_KEY; without a key the offline model writes
placeholder code. Blocks are loaded when the run starts, never when a
deployment is made. The parameters are
defined once, in `IssuesRequest`.

    python -m flows.process_issues --repo OWNER/NAME --label agent:ready \\
        --concurrency 3 --clone-dir work/

On a fleet, where a worker's disk is scratch: `repo_url` (default: the
repository's clone URL from the API; or a bare repository path, or another
https URL, the token sent as a header) and `branch` (default: the
repository's default branch) say where the issue branches come from and go
to, and `scratch_dir` makes the run clone into a fresh directory under it and
remove it at the end, so a rerun on any worker continues from what the
remote and GitHub hold.

Issues run as `resolve_issue` subflows, at most `concurrency` at a time, each
reported the moment it finishes; one failing does not stop the others. Run it
again and nothing is opened twice: an issue whose branch has an open PR is
skipped (or, with `existing_pr="update"`, worked again and its PR updated).
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from prefect import Flow
from pydantic import BaseModel, Field, SecretStr, field_validator

from flows.resolve_issue import ACTIVE_ISSUE_RUN, ExistingPR, IssueRun, resolve_issue
from tasks.agents.watch import tell
from tasks.common.aio import run_coroutine
from tasks.common.credentials import DEFAULT_ANTHROPIC_BLOCK, DEFAULT_GITHUB_BLOCK
from tasks.common.logs import run_logger
from tasks.common.parameters import (
    CheckedFlow,
    validate,
    with_parameters,
)
from tasks.common.remote import BranchName, RemoteUrl, locate_remote, reach_remote
from tasks.common.runs import flow_run_id
from tasks.common.secrets import scanning_for
from tasks.issues.clone import GitAuth, branch_for, run_clone
from tasks.issues.github import REPO_PATTERN, EtagCache, GitHub, Issue, resolve_github
from tasks.issues.offline_script import issue_reply
from tasks.issues.report import IssueResult, IssuesSummary, ProgressReporter
from tasks.issues.watch import ISSUES_WATCHER
from tasks.model.endpoint import (
    Endpoint,
    ProviderChoice,
    announce,
    aresolve_endpoint,
    use_endpoint,
)

MAX_CONCURRENCY = 32
# Workflows and actions under .github/ run with the repository's secrets once pushed.
PROTECTED_DIRS = {
    ".github": "holds CI workflows and actions that run with the repository's secrets; this "
    "run does not let agents change it (the allow_github_changes setting does)"
}
# What the offline model writes, as the log and the PR body say it.
OFFLINE_WORK = "placeholder code, not real changes"


class IssuesRequest(BaseModel):
    """process_issues' parameters: the one definition for the UI form, the CLI and Python."""

    repo: str = Field(description="The repository, as OWNER/NAME.")
    label: str = Field(
        default="agent:ready", min_length=1, description="Only open issues with this label."
    )
    concurrency: int = Field(
        default=3, ge=1, le=MAX_CONCURRENCY, description="How many issues are worked at once."
    )
    clone_dir: str = Field(
        default="work",
        description="Where the clone and the per-issue worktrees live, kept between runs "
        "(unless scratch_dir is set).",
    )
    repo_url: RemoteUrl = Field(
        default=None,
        description="The git remote the issue branches are cloned from and pushed to: a bare "
        "repository path or an https URL (the token from `credentials` or GITHUB_TOKEN, sent "
        "as a header). Default: the repository's clone URL from the GitHub API.",
    )
    branch: BranchName | None = Field(
        default=None,
        description="The branch issue branches start from and pull requests target. Default: "
        "the repository's default branch.",
    )
    scratch_dir: str | None = Field(
        default=None,
        description="Clone into a fresh directory under this one and remove it when the run "
        "ends (a fleet worker's disk); the GitHub ETag cache then lives in memory only. "
        "Default: keep the clone in clone_dir.",
    )
    credentials: str = Field(
        default=DEFAULT_GITHUB_BLOCK,
        description="The GitHubCredentials block to take the token from, loaded when the run "
        "starts; if the default one is not saved, GITHUB_TOKEN (and GITHUB_API_URL).",
    )
    provider: ProviderChoice = Field(
        default="auto",
        description="auto: Claude when a key is available, else the offline model; or "
        "anthropic, or offline.",
    )
    anthropic_credentials: str = Field(
        default=DEFAULT_ANTHROPIC_BLOCK,
        description="The AnthropicCredentials block, loaded when the run starts; if the default "
        "one is not saved, ANTHROPIC_API_KEY.",
    )
    review_threshold: int = Field(
        default=80, ge=0, le=100, description="Below this review score (0-100) the PR is a draft."
    )
    existing_pr: ExistingPR = Field(
        default="skip",
        description="When the issue's branch has an open PR: skip it, or update it.",
    )
    allow_github_changes: bool = Field(
        default=False,
        description="Let code agents change files under .github/ (CI workflows and actions, "
        "which run with the repository's secrets). Off: write_file refuses them.",
    )
    push_to: str | None = Field(
        default=None,
        description="A fork (OWNER/NAME) to push the branches to; the pull requests are opened "
        "from it. Default: branches go to the repository itself.",
    )

    @field_validator("repo", "push_to")
    @classmethod
    def _owner_slash_name(cls, repo: str | None) -> str | None:
        if repo is None:
            return None
        repo = repo.strip()
        if not REPO_PATTERN.match(repo):
            raise ValueError(f"{repo!r} is not a repository; pass it as OWNER/NAME")
        return repo


@with_parameters(IssuesRequest)
def _process_issues(**params: Any) -> IssuesSummary:
    """Work every open issue of `repo` labelled `label` into a reviewed pull request."""
    return run_coroutine(_process(validate(IssuesRequest, params)))


process_issues: Flow[..., IssuesSummary] = CheckedFlow(
    _process_issues, model=IssuesRequest, name="process_issues", log_prints=True
)


async def _process(request: IssuesRequest) -> IssuesSummary:
    log = run_logger("agentmill.process_issues")
    run_id = flow_run_id()
    watcher = ISSUES_WATCHER.get()
    auth = await resolve_github(request.credentials)
    endpoint = await aresolve_endpoint(request.provider, request.anthropic_credentials, issue_reply)
    announce(endpoint, log, OFFLINE_WORK)
    owner, name = request.repo.split("/")
    root = await asyncio.to_thread(Path(request.clone_dir).resolve)
    cache = _etag_cache(request, root, owner, name)
    started = time.perf_counter()
    async with GitHub(auth, cache=cache) as gh:
        repository = await gh.get_repo(request.repo)
        url = await _remote_url(request.repo_url, auth.token) or repository.clone_url
        git_auth = GitAuth(url, auth.token)
        fork = await gh.get_repo(request.push_to) if request.push_to else None
        issues = await gh.list_issues(request.repo, request.label)
        cache.save()
        tell(watcher, "listed", request.repo, endpoint.provider, issues, request.concurrency)
        log.info(
            "%d open issue(s) labelled %r in %s (%d GitHub request(s), %d not modified)",
            len(issues), request.label, request.repo, gh.stats.requests, gh.stats.not_modified,
        )  # fmt: skip
        results: list[IssueResult] = []
        reporter = ProgressReporter(request.repo, len(issues))
        if issues:
            async with run_clone(
                url,
                git_auth,
                request.branch or repository.default_branch,
                clone_path=root / owner / name,
                scratch_dir=Path(request.scratch_dir) if request.scratch_dir else None,
                run_id=run_id,
            ) as clone:
                if fork is not None:
                    await clone.use_fork(fork.clone_url, GitAuth(fork.clone_url, auth.token))
                run = IssueRun(
                    run_id=run_id,
                    repo=request.repo,
                    repository=repository,
                    gh=gh,
                    clone=clone,
                    provider=endpoint.provider,
                    review_threshold=request.review_threshold,
                    existing_pr=request.existing_pr,
                    watcher=watcher,
                    head_owner=(fork or repository).owner,
                    protected_dirs={} if request.allow_github_changes else PROTECTED_DIRS,
                )
                await reporter.start()
                with (
                    use_endpoint(endpoint),
                    ACTIVE_ISSUE_RUN.use(run),
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


def _etag_cache(request: IssuesRequest, root: Path, owner: str, name: str) -> EtagCache:
    """The GitHub ETag cache: on disk beside the clone, or with a scratch dir in memory only.

    It only saves rate limit (an unchanged page costs a 304), so nothing may
    depend on it: a fleet worker keeps no state of its own, and a rerun lands
    on any worker anyway, so a file it left behind would rarely be read again.
    """
    if request.scratch_dir:
        return EtagCache()
    return EtagCache(root / ".agentmill" / f"github-etags-{owner}-{name}.json")


async def _remote_url(repo_url: str | None, token: SecretStr) -> str | None:
    """The `repo_url` parameter as git gets it, reached once before anything is listed or cloned.

    A wrong one fails the run at its start, even when no issue is open (a
    scheduled run would otherwise pass until the first labelled issue).
    """
    if repo_url is None:
        return None
    url = locate_remote(repo_url)
    await reach_remote(url, GitAuth(url, token))
    return url


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
            tell(run.watcher, "issue_started", issue.number)
            try:
                result = await resolve_issue(issue=issue, repo=run.repo)
            except Exception as exc:  # one issue's failure is its own; the others go on
                run.mark_started(issue.number)
                result = _failed(run, issue, exc)
            result.started_s = round(began - clock, 3)
            result.duration_s = round(time.perf_counter() - began, 3)
        await reporter.report(result)
        tell(run.watcher, "issue_finished", result)
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
        refused_calls=tally.refused,
        error=f"{type(exc).__name__}: {exc}"[:1000],
    )


def _own_secrets(token: SecretStr, endpoint: Endpoint) -> list[str]:
    """This run's credentials, for the secret scan to catch should an agent write one."""
    keys = [token, endpoint.api_key]
    return [k.get_secret_value() for k in keys if k is not None]


def main(argv: list[str] | None = None) -> int:
    """`python -m flows.process_issues`: the same as `agentmill issues` (tasks.cli.issues)."""
    from tasks.cli.issues import main as issues_main  # the CLI imports this module

    return issues_main(argv, prog="python -m flows.process_issues")


if __name__ == "__main__":
    sys.exit(main())
