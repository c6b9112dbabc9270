"""resolve_issue: one GitHub issue to one reviewed pull request, as a subflow of process_issues.

Steps: triage → coordinator (subtasks) → code agents (concurrently where the
subtasks allow) → review (checks, reviewer, at most one round of fixes) →
pull request (commit, push, open or update, then label and comment at once).
Each issue works in its own git worktree on `agentmill/issue-<N>`.

Needs: an active process_issues run (`active_issue_run`), which holds the
GitHub client, the clone and the options; nothing secret is a parameter.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, cast

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import quote

from tasks.agents.changes import merge_changes, refuse_protected
from tasks.agents.graph import GraphHooks
from tasks.agents.output import AgentOutput, refuse_secrets, trailer_lines
from tasks.common.context import Scoped
from tasks.common.gitignore import refuse_ignored
from tasks.common.logs import run_logger
from tasks.common.trees import CandidateTree
from tasks.common.workspace import apply_files
from tasks.issues.checks import run_checks
from tasks.issues.clone import Clone, branch_for, commit_all, head_of, push_branch, tree_of_commit
from tasks.issues.github import GitHub, Issue, PullRequest, Repository
from tasks.issues.pull_request import (
    DONE_LABEL,
    ReviewOutcome,
    ReviewRound,
    announce,
    comment_body,
    open_or_update,
    pr_body,
    pr_title,
    refuse_edited_issue,
)
from tasks.issues.report import IssueResult, IssueStatus
from tasks.issues.team import (
    PLAN_SCHEMA,
    REVIEW_SCHEMA,
    TRIAGE_SCHEMA,
    IssuePlan,
    Triage,
    Verdict,
    checks_role_id,
    coordinator_role,
    fix_role_id,
    issue_brief,
    parse_result,
    review_role,
    triage_role,
)
from tasks.issues.watch import IssuesWatcher
from tasks.issues.work import IssueAgents, Tally
from tasks.model.endpoint import Provider

ExistingPR = Literal["skip", "update"]


@dataclass
class IssueRun:
    """Shared state of one process_issues run; its subflows find it through `current_issue_run`."""

    run_id: str
    repo: str
    repository: Repository
    gh: GitHub
    clone: Clone
    provider: Provider
    review_threshold: int
    existing_pr: ExistingPR
    head_owner: str = ""  # whose branch the PR comes from: the repository's owner, or a fork's
    # Top-level folders code agents may not write ({".github": why}); empty when allowed.
    protected_dirs: dict[str, str] = field(default_factory=dict)
    tallies: dict[int, Tally] = field(default_factory=dict)
    started: dict[int, asyncio.Event] = field(default_factory=dict)
    watcher: IssuesWatcher | None = None  # a bystander in this process (the terminal view)

    @property
    def pr_owner(self) -> str:
        """The owner of the branches pull requests come from (the fork's, when pushing there)."""
        return self.head_owner or self.repository.owner

    def tally(self, issue: int) -> Tally:
        return self.tallies.setdefault(issue, Tally())

    def observers_of(self, issue: int) -> tuple[GraphHooks, ...]:
        """What hears the issue's agents besides its tally: the watcher's hooks, if any."""
        return (self.watcher.agents(issue),) if self.watcher else ()

    def mark_started(self, issue: int) -> None:
        self.started.setdefault(issue, asyncio.Event()).set()

    async def wait_started(self, issue: int) -> None:
        await self.started.setdefault(issue, asyncio.Event()).wait()


ACTIVE_ISSUE_RUN: Scoped[IssueRun | None] = Scoped("issue_run", None)


def current_issue_run() -> IssueRun:
    return ACTIVE_ISSUE_RUN.require(
        "resolve_issue is a subflow of process_issues and cannot run on its own; run process_issues"
    )


@flow(name="resolve_issue", flow_run_name="issue-{issue.number}", log_prints=True)
async def resolve_issue(issue: Issue, repo: str) -> IssueResult:
    """Work one issue into a pull request (or find the one already open for it)."""
    run = current_issue_run()
    run.mark_started(issue.number)  # lets the next subflow start (see process_issues)
    log = run_logger("agentmill.resolve_issue")
    branch = branch_for(issue.number)
    owner = run.pr_owner
    existing = await run.gh.find_open_pr(repo, owner, branch)
    if existing is not None and run.existing_pr == "skip":
        log.info("issue #%d already has %s; skipping it", issue.number, existing.html_url)
        missing = [label for label in [DONE_LABEL] if label not in issue.labels]
        await announce_on_issue(issue.number, missing, existing.html_url, None, None)
        return _result(run, issue, "skipped", existing.html_url, existing.draft)

    remote = await run.clone.remote_sha(branch)
    # Update mode builds on the PR's branch; otherwise start again from the default branch.
    start = remote if existing is not None and remote else f"origin/{run.clone.default_branch}"
    worktree = await run.clone.add_worktree(issue.number, start)
    base_commit = await head_of(worktree)
    base_tree = await tree_of_commit(worktree, base_commit)
    agents = IssueAgents(
        brief=issue_brief(repo, issue),
        base_tree=base_tree,
        workdir=str(run.clone.path),  # agents read git objects, shared by every worktree
        provider=run.provider,
        tally=run.tally(issue.number),
        observers=run.observers_of(issue.number),
        protected_dirs=run.protected_dirs,
    )

    triage = parse_result(Triage, await agents.run(triage_role(), TRIAGE_SCHEMA))
    plan = parse_result(IssuePlan, await agents.run(coordinator_role(), PLAN_SCHEMA))
    log.info(
        "issue #%d: %s, %s priority, %s; %d subtask(s)",
        issue.number, triage.type, triage.priority, triage.complexity, len(plan.subtasks),
    )  # fmt: skip
    code = await agents.run_code(plan)
    changes_to_land(agents, code, run)  # a clash or a protected path fails before the review
    review, code = await review_step(
        agents, plan, code, CandidateTree(str(run.clone.path), base_tree), run
    )

    # The commit holds the agents' outputs, written now: the checks ran on a throwaway
    # copy, so nothing they did or left behind can reach the branch.
    written = apply_files(worktree, changes_to_land(agents, code, run))
    message = issue_commit_message(repo, issue, [*agents.tally.outputs], review, run)
    body = pr_body(issue, triage, plan, code, review, run.provider)
    # As at build_app's phase commits: a key-shaped string anywhere that lands blocks it all.
    texts = [("the commit message", message), ("the pull request", f"{pr_title(issue)}\n{body}")]
    refuse_secrets([*agents.tally.outputs], texts)
    await refuse_edited_issue(run.gh, repo, issue)  # the text the agents worked on is still it
    sha = await commit_all(worktree, written, message)
    if sha is None and existing is None:
        log.info("issue #%d: the agents changed nothing; no pull request", issue.number)
        await run.clone.remove_worktree(worktree)
        return _result(run, issue, "unchanged", None, None, review.score)
    if sha is not None:
        await push(str(worktree), branch, remote)
    pr, created = await open_pull_request(issue, branch, body, review.draft)
    await announce_on_issue(
        issue.number, [*triage.issue_labels(), DONE_LABEL], pr.html_url, review.draft, review.score
    )
    await run.clone.remove_worktree(worktree)
    return _result(
        run, issue, "opened" if created else "updated", pr.html_url, pr.draft, review.score
    )


async def review_step(
    agents: IssueAgents,
    plan: IssuePlan,
    code: list[AgentOutput],
    base: CandidateTree,
    run: IssueRun,
) -> tuple[ReviewOutcome, list[AgentOutput]]:
    """Checks and reviewer; if the reviewer asks for fixes, one round of them and a final review.

    Returns the outcome and the code outputs that make up the change (fixes
    after the first drafts, so theirs win where both wrote a file).
    """
    first = await _review_round(agents, 1, [o.role for o in code], base, code, run)
    rounds = [first]
    if not first.verdict.approve and first.verdict.fixes:
        fixes = await agents.run_fixes(plan)
        code = [*code, *fixes]
        fixers = [fix_role_id(s.id) for s in plan.order()]
        rounds.append(await _review_round(agents, 2, fixers, base, code, run))
    return ReviewOutcome(rounds=rounds, threshold=run.review_threshold), code


def changes_to_land(
    agents: IssueAgents, code: list[AgentOutput], run: IssueRun
) -> dict[str, dict[str, str]]:
    """The code agents' change sets as one, refused whole if any of it may not land.

    Two agents that wrote one path without reading each other's is a conflict;
    a fix agent replaces what it read. Protected folders and ignored paths are
    refused here too, so a bad change fails before it is reviewed or written.
    """
    ancestors = {o.role: agents.graph.ancestors(o.role) for o in code}
    changes = merge_changes(code, ancestors=ancestors)
    refuse_protected(changes, run.protected_dirs)
    refuse_ignored(run.clone.path, agents.graph.base_tree, changes)
    return changes


async def _review_round(
    agents: IssueAgents,
    round_: int,
    code_roles: list[str],
    base: CandidateTree,
    code: list[AgentOutput],
    run: IssueRun,
) -> ReviewRound:
    tree = replace(base, layers=tuple(o.files for o in code))
    changed = sorted({path for o in code for path in o.files})
    # quoted: Prefect would walk every file of the tree looking for futures
    checks = await run_checks(cast("CandidateTree", quote(tree)), changed)
    agents.add(checks.as_output(checks_role_id(round_), run.provider))
    reviewer = review_role(round_, code_roles)
    verdict = parse_result(Verdict, await agents.run(reviewer, REVIEW_SCHEMA))
    return ReviewRound(round=round_, checks=checks, verdict=verdict, reviewer=reviewer.id)


def issue_commit_message(
    repo: str, issue: Issue, outputs: list[AgentOutput], review: ReviewOutcome, run: IssueRun
) -> str:
    """One commit per issue, with build_app's trailers plus the issue it resolves."""
    lines = [f"agentmill: resolve #{issue.number}: {issue.title.strip()}"[:200], ""]
    lines += [f"Review score {review.score}/100 ({len(review.rounds)} round(s)).", ""]
    if run.provider == "offline":
        lines += ["Written by the OFFLINE model: placeholder code, not a real change.", ""]
    lines.append(f"Agentmill-Issue: {repo}#{issue.number}")
    if issue.updated_at:  # the version of the issue the agents worked on
        lines.append(f"Agentmill-Issue-Updated: {issue.updated_at}")
    lines += trailer_lines(outputs, run.run_id, run.provider)
    return "\n".join(lines) + "\n"


@task(name="push-branch", cache_policy=NO_CACHE, persist_result=False)
async def push(worktree: str, branch: str, expected: str | None) -> None:
    """Push the issue's branch; the token goes to git through its environment only."""
    run = current_issue_run()
    await push_branch(run.clone, Path(worktree), branch, expected)


@task(name="open-pull-request", cache_policy=NO_CACHE, persist_result=False)
async def open_pull_request(
    issue: Issue, branch: str, body: str, draft: bool
) -> tuple[PullRequest, bool]:
    """Open the issue's PR, or update the one open for its branch. Returns (PR, created?)."""
    run = current_issue_run()
    return await open_or_update(
        run.gh,
        run.repo,
        owner=run.pr_owner,
        branch=branch,
        base=run.clone.default_branch,
        title=pr_title(issue),
        body=body,
        draft=draft,
    )


@task(name="announce-on-issue", cache_policy=NO_CACHE, persist_result=False)
async def announce_on_issue(
    number: int, labels: list[str], pr_url: str, draft: bool | None, score: int | None
) -> None:
    """Label the issue and comment the PR link on it, concurrently; neither twice."""
    run = current_issue_run()
    body = comment_body(number, pr_url, draft=bool(draft), score=score)
    await announce(run.gh, run.repo, number, labels, body)


def _result(
    run: IssueRun,
    issue: Issue,
    status: IssueStatus,
    pr_url: str | None,
    draft: bool | None,
    score: int | None = None,
) -> IssueResult:
    tally = run.tally(issue.number)
    return IssueResult(
        number=issue.number,
        title=issue.title,
        status=status,
        branch=branch_for(issue.number),
        pr_url=pr_url,
        draft=draft,
        score=score,
        tokens=tally.tokens,
        cost_usd=round(tally.cost_usd, 6),
        agents=tally.agents,
        cached_agents=tally.cached,
        refused_calls=tally.refused,
    )
