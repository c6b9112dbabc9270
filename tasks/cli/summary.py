"""The final summary of a run, as a small table: what landed, whether it checks out, what it cost.

Read from the run's result (a BuildResult or an IssuesSummary) and, for the
phases, from the progress the live view kept; the prompt cache's line is its
ledger's own (tasks.model.ledger).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tasks.build.report import AgentReport
from tasks.cli.progress import BuildProgress, clock_text
from tasks.issues.report import IssuesSummary

if TYPE_CHECKING:
    from flows.build_app import BuildResult


def build_summary(result: BuildResult, progress: BuildProgress) -> RenderableType:
    """Phases with their commits, then the run's figures."""
    phases = Table(box=box.SIMPLE_HEAD, title=f"agentmill build: {result.status}")
    for column in ("phase", "agents", "cached", "commit"):
        phases.add_column(column)
    commits = {c.phase: c.sha for c in result.commits}
    by_phase: dict[str, list[AgentReport]] = {}
    for agent in result.agents:
        by_phase.setdefault(agent.phase, []).append(agent)
    names = [p.name for p in progress.phases] or list(by_phase)
    for name in names:
        agents = by_phase.get(name, [])
        sha = commits.get(name)
        phases.add_row(
            name,
            str(len(agents)),
            str(sum(1 for a in agents if a.cached)),
            sha[:12] if sha else Text("no change", style="dim"),
        )
    m = result.metrics
    figures = Table.grid(padding=(0, 2))
    figures.add_column(style="dim", no_wrap=True)
    figures.add_column(overflow="fold")  # paths whole, never cut with an ellipsis
    rows: list[tuple[str, str]] = [
        ("commits", f"{m.commits} in {result.workdir}"),
        ("verification", result.verification.line()),
        ("model", "OFFLINE (placeholder output)" if result.provider == "offline" else "Claude"),
        ("cost", f"${m.cost_usd:.4f}, {m.tokens:,} tokens, {m.model_requests} model requests"),
        ("prompt cache", m.cache.summary().removeprefix("cache ")),
        (
            "wall vs critical path",
            f"{m.wall_s:.1f}s vs {m.critical_path_s:.1f}s (efficiency {m.parallel_efficiency:.2f})",
        ),
        ("report", result.report_path),
    ]
    for label, value in rows:
        figures.add_row(label, value)
    return Group(phases, figures)


def failed_build_summary(progress: BuildProgress) -> RenderableType:
    """What a build that raised still did: its phases as the live view saw them end."""
    table = Table(box=box.SIMPLE_HEAD, title="agentmill build: failed")
    for column in ("phase", "agents", "outcome"):
        table.add_column(column)
    for phase in progress.phases:
        settled, _, total = progress.counts(phase)
        outcome = (
            phase.outcome if phase.outcome != "committed" else f"committed {phase.commit[:12]}"
        )
        table.add_row(phase.name, f"{settled}/{total}", outcome)
    tokens, cost = progress.spent()
    footer = Text(
        f"spent ${cost:.4f} ({tokens:,} tokens) in {clock_text(progress.elapsed_s())}; "
        "committed phases stay, and a rerun continues from the cache",
        style="dim",
    )
    return Group(table, footer)


def issues_summary(summary: IssuesSummary) -> RenderableType:
    table = Table(box=box.SIMPLE_HEAD, title=f"agentmill issues: {summary.repo}")
    for column in ("issue", "status", "pull request or error", "score", "cost", "time"):
        table.add_column(column, overflow="fold")
    for issue in summary.issues:
        style = "bold red" if issue.status == "failed" else None
        table.add_row(
            f"#{issue.number}",
            Text(issue.status, style=style or ""),
            issue.pr_url or (issue.error or "")[:100],
            "" if issue.score is None else str(issue.score),
            f"${issue.cost_usd:.4f}",
            f"{issue.duration_s:.1f}s",
        )
    return Group(table, Text(summary.line(), style="dim"))
