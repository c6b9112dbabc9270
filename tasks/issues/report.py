"""What process_issues reports: a result per issue, as soon as it is known, and the run's summary.

Each finished issue is announced on three channels at once, the moment it
finishes (not after the slowest one): a log line, a Prefect event
(`agentmill.issue.<status>`, for automations) and an update of the run's
progress artifact. The summary is returned to the caller and also published
as a table artifact.
"""

from __future__ import annotations

import asyncio
from typing import Literal
from uuid import UUID

from prefect.artifacts import (
    acreate_progress_artifact,
    acreate_table_artifact,
    aupdate_progress_artifact,
)
from prefect.context import FlowRunContext
from prefect.events import emit_event
from pydantic import BaseModel, Field

from tasks.common.logs import run_logger

IssueStatus = Literal["opened", "updated", "skipped", "unchanged", "failed"]


class IssueResult(BaseModel):
    """One issue's outcome. `tokens` and `cost_usd` count this run's model work, not cache hits."""

    number: int
    title: str
    status: IssueStatus
    branch: str
    pr_url: str | None = None
    draft: bool | None = None
    score: int | None = Field(default=None, description="The final review's score, 0-100.")
    duration_s: float = 0.0
    started_s: float = Field(default=0.0, description="Seconds from the run's start.")
    tokens: int = 0
    cost_usd: float = 0.0
    agents: int = 0
    cached_agents: int = 0
    refused_calls: int = Field(default=0, description="Tool calls of its agents the run refused.")
    error: str | None = None


class IssuesSummary(BaseModel):
    repo: str
    label: str
    run_id: str
    provider: str
    concurrency: int
    wall_s: float
    issues: list[IssueResult]

    def count(self, status: IssueStatus) -> int:
        return sum(1 for i in self.issues if i.status == status)

    @property
    def failed(self) -> list[IssueResult]:
        return [i for i in self.issues if i.status == "failed"]

    def table(self) -> list[dict[str, object]]:
        return [
            {
                "issue": f"#{i.number}",
                "title": i.title[:80],
                "status": i.status,
                "branch": i.branch,
                "pull request": i.pr_url or "",
                "draft": "" if i.draft is None else ("yes" if i.draft else "no"),
                "score": "" if i.score is None else i.score,
                "duration s": round(i.duration_s, 2),
                "tokens": i.tokens,
                "cost usd": round(i.cost_usd, 6),
                "refused calls": i.refused_calls,
                "error": i.error or "",
            }
            for i in self.issues
        ]

    def line(self) -> str:
        counts = ", ".join(
            f"{self.count(s)} {s}"
            for s in ("opened", "updated", "skipped", "unchanged", "failed")
            if self.count(s)
        )
        cost = sum(i.cost_usd for i in self.issues)
        return (
            f"{self.repo} [{self.label}]: {len(self.issues)} issue(s): {counts or 'none'}; "
            f"${cost:.4f}; wall {self.wall_s:.1f}s"
        )


class ProgressReporter:
    """Announces each issue's result as it arrives; artifacts only inside a flow run."""

    def __init__(self, repo: str, total: int) -> None:
        self.repo = repo
        self.total = total
        self.done = 0
        self._artifact: UUID | None = None
        self._lock = asyncio.Lock()
        self._in_flow = FlowRunContext.get() is not None

    async def start(self) -> None:
        if self._in_flow and self.total:
            self._artifact = await acreate_progress_artifact(
                progress=0.0,
                key="agentmill-issues-progress",
                description=f"Issues of {self.repo} worked so far (of {self.total})",
            )

    async def report(self, result: IssueResult) -> None:
        async with self._lock:  # one update at a time keeps `done` and the artifact in step
            self.done += 1
            log = run_logger("agentmill.issues")
            where = result.pr_url or result.error or "no pull request"
            level = log.warning if result.status == "failed" else log.info
            level(
                "issue #%d %s (%d/%d): %s; %.1fs, %d tokens, $%.4f",
                result.number, result.status, self.done, self.total, where,
                result.duration_s, result.tokens, result.cost_usd,
            )  # fmt: skip
            emit_event(
                event=f"agentmill.issue.{result.status}",
                resource={
                    "prefect.resource.id": f"agentmill.github.issue.{self.repo}.{result.number}",
                    "prefect.resource.name": f"{self.repo}#{result.number}",
                },
                payload=result.model_dump(mode="json"),
            )
            if self._artifact is not None:
                await aupdate_progress_artifact(
                    self._artifact, progress=round(100.0 * self.done / self.total, 1)
                )

    async def finish(self, summary: IssuesSummary) -> None:
        run_logger("agentmill.issues").info("%s", summary.line())
        if self._in_flow:
            await acreate_table_artifact(
                table=summary.table(),
                key="agentmill-issues-summary",
                description=f"agentmill: {summary.line()}",
            )
