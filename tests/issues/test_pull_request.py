"""The pull request step against the fake GitHub: draft below the threshold, nothing twice."""

from __future__ import annotations

from pydantic import SecretStr

from tasks.agents.output import AgentOutput
from tasks.issues.checks import CheckFinding, ChecksReport, ToolRun
from tasks.issues.github import GitHub, GitHubAuth, Issue
from tasks.issues.pull_request import (
    ReviewOutcome,
    ReviewRound,
    announce,
    comment_body,
    open_or_update,
    pr_body,
)
from tasks.issues.team import IssuePlan, Subtask, Triage, Verdict
from tasks.testing.github_api import FakeGitHub

TOKEN = "ghp_PRSTEP0123456789abcdefghijklmnopqrstuv"
REPO = "acme/widgets"


def outcome(score: int, threshold: int = 80) -> ReviewOutcome:
    finding = CheckFinding(
        tool="ruff", severity="warning", path="a.py", line=3, code="F401", message="x"
    )
    checks = ChecksReport(
        tools=[ToolRun(tool="ruff", status="findings", summary="1 finding", findings=[finding])]
    )
    verdict = Verdict(score=score, approve=False, fixes=["a.py:3 F401 unused import"])
    return ReviewOutcome(
        rounds=[ReviewRound(round=1, checks=checks, verdict=verdict, reviewer="ISSUE_REVIEW")],
        threshold=threshold,
    )


def test_the_body_says_draft_and_lists_findings_below_the_threshold() -> None:
    issue = Issue(number=7, title="Add | pipes")
    triage = Triage(type="feature", priority="low", complexity="small")
    plan = IssuePlan(subtasks=[Subtask(id=1, title="Do it", description="d")])
    code = [
        AgentOutput(
            role="ISSUE_CODE_1",
            summary="did it",
            files={"a.py": "x"},
            model="m",
            provider="anthropic",
        )
    ]
    review = outcome(60)
    body = pr_body(issue, triage, plan, code, review, "anthropic")
    assert review.draft and body.startswith("Resolves #7.")
    assert "**Draft**: the review scored 60/100, under the threshold of 80" in body
    assert "- warning · ruff F401 `a.py:3` x" in body and "### Still to fix" in body
    assert "offline" not in body and body.rstrip().endswith("<!-- agentmill:issue-7 -->")
    assert not outcome(80).draft


async def test_open_then_update_and_comment_once() -> None:
    with FakeGitHub(TOKEN) as fake:
        fake.add_repo(REPO, "/nowhere.git")
        fake.add_issue(REPO, "issue", "", ["agent:ready"])
        async with GitHub(GitHubAuth(SecretStr(TOKEN), fake.api_url)) as gh:
            args = {"owner": "acme", "branch": "agentmill/issue-1", "base": "main", "title": "t"}
            pr, created = await open_or_update(gh, REPO, body="one", draft=True, **args)
            again, created_again = await open_or_update(gh, REPO, body="two", draft=True, **args)
            comment = comment_body(1, pr.html_url, draft=True, score=60)
            first = await announce(gh, REPO, 1, ["type:bug"], comment)
            second = await announce(gh, REPO, 1, [], comment)
        pulls = fake.repos[REPO].pulls
        assert created and not created_again and again.number == pr.number
        assert len(pulls) == 1 and pulls[pr.number]["draft"] is True
        assert pulls[pr.number]["body"] == "two"
        assert first == (True, True) and second == (False, False)
        assert len(fake.repos[REPO].comments[1]) == 1
        assert "a draft pull request" in fake.repos[REPO].comments[1][0]["body"]
        assert fake.labels_of(REPO, 1) == ["agent:ready", "type:bug"]
