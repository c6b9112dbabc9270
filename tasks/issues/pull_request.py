"""The pull request step: a body from the agents' outputs and the review; idempotent calls.

Idempotence comes from GitHub's own state, not from a local record: an open
PR whose head is the issue's branch is updated instead of opened again, and
the issue comment carries a hidden marker that is looked for first. So a
second run (or a run after a crash between two calls) adds nothing twice.
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, Field

from tasks.agents.output import AgentOutput
from tasks.common.errors import AgentmillError
from tasks.common.secrets import redact
from tasks.issues.checks import CheckFinding, ChecksReport
from tasks.issues.github import GitHub, Issue, PullRequest
from tasks.issues.team import IssuePlan, Triage, Verdict

MAX_FINDINGS_LISTED = 40
MAX_BODY_CHARS = 60_000  # GitHub refuses bodies over 65,536 characters
DONE_LABEL = "agentmill:pr-open"


class ReviewRound(BaseModel):
    """One pass of checks and the reviewer's verdict on them."""

    round: int
    checks: ChecksReport
    verdict: Verdict
    reviewer: str


class ReviewOutcome(BaseModel):
    rounds: list[ReviewRound] = Field(min_length=1)
    threshold: int

    @property
    def final(self) -> ReviewRound:
        return self.rounds[-1]

    @property
    def score(self) -> int:
        return self.final.verdict.score

    @property
    def draft(self) -> bool:
        """Below the threshold, the PR opens as a draft: a human should look first."""
        return self.score < self.threshold


def pr_marker(issue: int) -> str:
    return f"<!-- agentmill:issue-{issue} -->"


def comment_marker(issue: int) -> str:
    return f"<!-- agentmill:pr-link issue-{issue} -->"


def pr_title(issue: Issue) -> str:
    title = f"Resolve #{issue.number}: {issue.title.strip()}"
    return title if len(title) <= 200 else title[:197] + "..."


def pr_body(
    issue: Issue,
    triage: Triage,
    plan: IssuePlan,
    code: list[AgentOutput],
    review: ReviewOutcome,
    provider: str,
) -> str:
    """The PR description: what was asked, how it was split, what each agent did, the review."""
    final = review.final
    status = "approved" if final.verdict.approve else "not approved"
    lines = [f"Resolves #{issue.number}.", ""]
    if provider == "offline":
        lines += [
            "> [!WARNING]",
            "> Written by agentmill's **offline model**: placeholder code, not a real change. "
            "Set ANTHROPIC_API_KEY to work issues with Claude.",
            "",
        ]
    if review.draft:
        lines += [
            f"**Draft**: the review scored {review.score}/100, under the threshold of "
            f"{review.threshold}. A person should look before this is merged.",
            "",
        ]
    lines += [
        "## Triage",
        "",
        f"type **{triage.type}** · priority **{triage.priority}** · complexity "
        f"**{triage.complexity}**" + (f" — {triage.rationale}" if triage.rationale else ""),
        "",
        "## Plan",
        "",
    ]
    for subtask in plan.order():
        after = f" (after {', '.join(str(d) for d in subtask.depends_on)})"
        lines.append(f"{subtask.id}. **{subtask.title}**{after if subtask.depends_on else ''}")
    lines += ["", "## Changes", ""]
    for output in code:
        files = ", ".join(f"`{path}`" for path in sorted(output.files)) or "no files"
        lines.append(f"- **{output.role}**: {output.summary} ({files})")
        lines += [f"  - {d}" for d in output.decisions[:5]]
    lines += [
        "",
        f"## Review: {review.score}/100, {status}",
        "",
    ]
    if len(review.rounds) > 1:
        first = review.rounds[0]
        lines += [
            f"The first review scored {first.verdict.score}/100 and asked for "
            f"{len(first.verdict.fixes)} fix(es); the code agents made one round of fixes.",
            "",
        ]
    if final.verdict.notes:
        lines += [final.verdict.notes, ""]
    lines += ["| check | result | summary |", "| --- | --- | --- |"]
    for tool in final.checks.tools:
        lines.append(f"| {tool.tool} | {tool.status} | {_cell(tool.summary)} |")
    findings = final.checks.findings
    lines += ["", f"### Findings ({len(findings)})", ""]
    lines += [_finding_line(f) for f in findings[:MAX_FINDINGS_LISTED]] or ["None."]
    if len(findings) > MAX_FINDINGS_LISTED:
        lines.append(f"- ... and {len(findings) - MAX_FINDINGS_LISTED} more")
    if final.verdict.fixes and not final.verdict.approve:
        lines += ["", "### Still to fix", ""]
        lines += [f"- {_cell(fix)}" for fix in final.verdict.fixes[:MAX_FINDINGS_LISTED]]
    lines += ["", pr_marker(issue.number), ""]
    # Agents' summaries and the checks' output are untrusted text: nothing shaped like a
    # key, and none of this run's secrets in any encoding, reaches the pull request.
    body = redact("\n".join(lines))
    if len(body) > MAX_BODY_CHARS:
        body = body[:MAX_BODY_CHARS] + "\n\n(truncated)\n\n" + pr_marker(issue.number) + "\n"
    return body


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")[:300]


def _finding_line(f: CheckFinding) -> str:
    where = f"`{f.path}:{f.line}`" if f.path else ""
    return f"- {f.severity} · {f.tool} {f.code} {where} {_cell(f.message)}".replace("  ", " ")


def comment_body(issue: int, pr_url: str, *, draft: bool, score: int | None) -> str:
    state = "a draft pull request" if draft else "a pull request"
    scored = f" (review score {score}/100)" if score is not None else ""
    return redact(
        f"agentmill opened {state} for this issue: {pr_url}{scored}.\n\n{comment_marker(issue)}\n"
    )


async def open_or_update(
    gh: GitHub,
    repo: str,
    *,
    owner: str,
    branch: str,
    base: str,
    title: str,
    body: str,
    draft: bool,
) -> tuple[PullRequest, bool]:
    """The issue's PR, opened, or updated if one is open for the branch. (PR, created?)"""
    existing = await gh.find_open_pr(repo, owner, branch)
    if existing is not None:
        return await gh.update_pr(repo, existing.number, title=title, body=body), False
    pr = await gh.create_pr(
        repo, title=title, head=f"{owner}:{branch}", base=base, body=body, draft=draft
    )
    return pr, True


async def announce(
    gh: GitHub, repo: str, issue: int, labels: list[str], comment: str
) -> tuple[bool, bool]:
    """Label the issue and comment the PR link, at the same time. (labelled?, commented?)"""
    labelled, commented = await asyncio.gather(
        _label(gh, repo, issue, labels), ensure_comment(gh, repo, issue, comment)
    )
    return labelled, commented


async def _label(gh: GitHub, repo: str, issue: int, labels: list[str]) -> bool:
    await gh.add_labels(repo, issue, labels)
    return bool(labels)


async def ensure_comment(gh: GitHub, repo: str, issue: int, body: str) -> bool:
    """Comment unless a comment with this issue's marker is there already; True if it commented."""
    marker = comment_marker(issue)
    if any(marker in c.body for c in await gh.list_comments(repo, issue)):
        return False
    await gh.create_comment(repo, issue, body)
    return True


class IssueEdited(AgentmillError, RuntimeError):
    """The issue changed after it was picked up; what the agents worked on is not what it says."""


async def refuse_edited_issue(gh: GitHub, repo: str, issue: Issue) -> None:
    """Refuse to push work on an issue whose title or text changed since it was listed.

    A maintainer labels an issue after reading it; an edit after that (or
    during the run) could slip instructions past them into what the agents
    do. The issue's `updated_at` from the listing is the version worked on.
    """
    now = await gh.get_issue(repo, issue.number)
    if (now.title, now.body) != (issue.title, issue.body):
        raise IssueEdited(
            f"issue #{issue.number} was edited after it was picked up (updated_at "
            f"{issue.updated_at or '?'}, now {now.updated_at or '?'}); the agents worked on the "
            "old text, so nothing is pushed. Check the new text, then run again to work it"
        )
