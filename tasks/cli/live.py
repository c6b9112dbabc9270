"""The live terminal view of a run (rich), and the plain progress lines for a pipe or CI log.

On a terminal, `live_view` redraws a few lines four times a second from the
run's progress (tasks.cli.progress): a line per phase (agents settled,
running, total, and its commit), the agents running now, tokens and dollars
so far, elapsed time and an estimate of what remains. Redrawing reads the
progress only; the progress itself is moved by the run's hooks.

Without a terminal, the `*Lines` watchers print a few lines per phase (it
started, its agents are done, it committed) or per issue, never one per
model request, so a CI log stays readable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from tasks.agents.graph import Finished
from tasks.agents.job import AgentJob
from tasks.build.report import CommitRecord
from tasks.cli.progress import (
    SETTLED,
    AgentBook,
    BuildProgress,
    IssuesProgress,
    PhaseState,
    clock_text,
)
from tasks.cli.terminal import is_live, prefect_logs
from tasks.common.context import Scoped
from tasks.issues.report import IssueResult

if TYPE_CHECKING:
    from tasks.build.phases import Build
    from tasks.build.verify import Verification
    from tasks.issues.github import Issue

T = TypeVar("T")
W = TypeVar("W")
REFRESH_PER_S = 4
BAR_WIDTH = 24
MAX_RUNNING_SHOWN = 6
OFFLINE_NOTE = "OFFLINE MODEL: placeholder output, not real work"


def shown(
    console: Console,
    watcher: Scoped[W | None],
    progress: W,
    render: Callable[[], RenderableType],
    run: Callable[[], T],
    *,
    verbose: bool,
) -> T:
    """`run()` with `progress` as its current watcher, redrawn by `render` on a terminal.

    Prefect's own lines are quiet meanwhile (tasks.cli.terminal). Without a
    terminal nothing is redrawn: `progress` is then a `*Lines` watcher that
    prints its own plain lines.
    """
    with watcher.use(progress), prefect_logs(console, verbose=verbose):
        if not is_live(console):
            return run()
        with live_view(console, render):
            return run()


@contextmanager
def live_view(console: Console, render: Callable[[], RenderableType]) -> Iterator[Live]:
    """Redraw `render()` on `console` until the block ends; the last frame stays on screen."""
    with Live(
        get_renderable=render,
        console=console,
        refresh_per_second=REFRESH_PER_S,
        transient=False,
        redirect_stdout=True,
        redirect_stderr=True,
    ) as live:
        yield live


def _provider_text(provider: str) -> Text:
    if provider == "offline":
        return Text(OFFLINE_NOTE, style="bold yellow")
    return Text(f"on {provider}" if provider else "starting the flow run ...", style="dim")


def _footer(tokens: int, cost: float, elapsed: float, remaining: float | None) -> Text:
    estimate = f"~{clock_text(remaining)}" if remaining is not None else "estimating"
    return Text.assemble(
        ("tokens ", "dim"),
        f"{tokens:,}",
        ("  cost ", "dim"),
        f"${cost:.4f}",
        ("  elapsed ", "dim"),
        clock_text(elapsed),
        ("  remaining ", "dim"),
        estimate,
    )


def _running_text(book: AgentBook, now: float) -> Text:
    running = book.running()
    if not running:
        return Text("running: -", style="dim")
    shown = ", ".join(
        f"{a.role} ({a.model.removeprefix('claude-')}, {now - a.started_at:.0f}s)"
        for a in running[:MAX_RUNNING_SHOWN]
    )
    more = f" +{len(running) - MAX_RUNNING_SHOWN} more" if len(running) > MAX_RUNNING_SHOWN else ""
    return Text.assemble(("running: ", "dim"), shown + more)


def _bar(settled: int, running: int, total: int) -> Text:
    """━ settled, ╍ running, ─ to come: readable in colour and in a plain-text capture too."""
    if total <= 0:
        return Text("─" * BAR_WIDTH, style="dim")
    done = round(BAR_WIDTH * settled / total)
    busy = min(round(BAR_WIDTH * running / total), BAR_WIDTH - done)
    if running and not busy and done < BAR_WIDTH:
        busy = 1
    return Text.assemble(
        ("━" * done, "green"), ("╍" * busy, "cyan"), ("─" * (BAR_WIDTH - done - busy), "dim")
    )


def _phase_outcome(phase: PhaseState) -> Text:
    if phase.outcome == "committed":
        return Text(f"committed {phase.commit[:8]}", style="green")
    if phase.outcome == "unchanged":
        return Text("unchanged", style="dim")
    if phase.outcome == "failed":
        return Text("failed", style="bold red")
    return Text("")


def render_build(progress: BuildProgress) -> RenderableType:
    """One frame of a build: its phases, the agents running now, spend and time."""
    with progress.lock:
        table = Table.grid(padding=(0, 2))
        for _ in range(4):
            table.add_column()
        for phase in progress.phases:
            settled, running, total = progress.counts(phase)
            counts = f"{settled}/{total}" + (f"  {running} running" if running else "")
            fixing = sum(1 for a in progress.extras(phase) if a.status == "running")
            counts += f"  {fixing} fixing" if fixing else ""
            outcome = _phase_outcome(phase)
            if phase.outcome == "open" and phase.checking and not fixing:
                outcome = Text(f"checks running (round {phase.checking})", style="cyan")
            elif phase.outcome == "open" and total and settled == total and not fixing:
                checked = f"checks {phase.checks}; to commit" if phase.checks else ""
                outcome = Text(checked or "waiting to commit", style="dim")
            table.add_row(phase.name, _bar(settled, running, total), counts, outcome)
        tokens, cost = progress.spent()
        where = f"{progress.workdir}  " if progress.workdir else ""
        return Group(
            Text.assemble(("agentmill build  ", "bold"), where, _provider_text(progress.provider)),
            table,
            _running_text(progress, progress.clock()),
            _footer(tokens, cost, progress.elapsed_s(), progress.remaining_s()),
        )


def render_issues(progress: IssuesProgress) -> RenderableType:
    """One frame of an issues run: a line per issue, spend and time."""
    with progress.lock:
        table = Table.grid(padding=(0, 2))
        for _ in range(4):
            table.add_column()
        for issue in progress.issues.values():
            detail = ""
            if issue.result is not None:
                detail = issue.result.pr_url or (issue.result.error or "")[:80]
            elif issue.book is not None:
                running = [a.role for a in issue.book.running()]
                settled = sum(1 for a in issue.book.agents.values() if a.status in SETTLED)
                detail = f"{settled} agents done" + (f", {', '.join(running)}" if running else "")
            style = {"failed": "bold red", "queued": "dim", "working": "cyan"}.get(
                issue.stage, "green"
            )
            table.add_row(
                f"#{issue.number}", issue.title[:50], Text(issue.stage, style=style), detail
            )
        tokens, cost = progress.spent()
        header = Text.assemble(
            ("agentmill issues  ", "bold"),
            f"{progress.repo}  " if progress.repo else "listing issues ...  ",
            _provider_text(progress.provider),
        )
        return Group(
            header, table, _footer(tokens, cost, progress.elapsed_s(), progress.remaining_s())
        )


class BuildLines(BuildProgress):
    """A build's progress as plain lines: a phase starting, its agents done, its commit."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console
        self._announced: set[str] = set()
        self._ended: dict[str, str] = {}  # phases that ended after one still running
        self._told: set[str] = set()

    def _say(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def planned(self, build: Build) -> None:
        super().planned(build)
        agents = len(self.order)
        note = f"; {OFFLINE_NOTE}" if self.provider == "offline" else ""
        self._say(f"build: {agents} agents in {len(self.phases)} phases{note}")

    def started(self, role_id: str, job: AgentJob) -> None:
        super().started(role_id, job)
        phase = self._phase_of(role_id)
        if phase is not None and phase.name not in self._announced:
            self._announced.add(phase.name)
            self._say(f"{phase.name}: started ({len(phase.roles)} agents)")

    def finished(self, role_id: str, finished: Finished) -> None:
        super().finished(role_id, finished)
        self._maybe_settled(role_id)

    def failed(self, role_id: str, error: str, duration_s: float) -> None:
        super().failed(role_id, error, duration_s)
        self._say(f"  {error}")
        self._maybe_settled(role_id)

    def skipped(self, role_id: str, error: str) -> None:
        super().skipped(role_id, error)
        self._maybe_settled(role_id)

    def checked(self, phase: str, verdict: Verification) -> None:
        super().checked(phase, verdict)
        self._say(f"{phase}: {verdict.line()}")

    def phase_ended(
        self, phase: str, commit: CommitRecord | None, error: BaseException | None
    ) -> None:
        super().phase_ended(phase, commit, error)
        if error is not None:
            line = f"{phase}: not committed: {error}"
        elif commit is not None:
            line = f"{phase}: committed {commit.sha[:12]}"
        else:
            line = f"{phase}: no change, no commit"
        self._told.discard(phase)  # a phase the approval gate sent back ends again
        self._ended[phase] = line
        self._say_ended_in_order()

    def _say_ended_in_order(self) -> None:
        """Phases' ends in plan order, as their commits land: a subflow may return out of turn."""
        for phase in self.phases:
            line = self._ended.pop(phase.name, None)
            if line is not None:
                self._told.add(phase.name)
                self._say(line)
            elif phase.name not in self._told:
                return  # held until this one ends

    def _phase_of(self, role_id: str) -> PhaseState | None:
        return next((p for p in self.phases if role_id in p.roles), None)

    def _maybe_settled(self, role_id: str) -> None:
        phase = self._phase_of(role_id)
        if phase is None:
            return
        settled, _, total = self.counts(phase)
        if settled < total:
            return
        with self.lock:
            agents = [self.agents[r] for r in phase.roles]
        cached = sum(1 for a in agents if a.cached)
        failed = sum(1 for a in agents if a.status != "done")
        cost = sum(a.cost_usd for a in agents)
        remaining = self.remaining_s()
        left = f", about {clock_text(remaining)} to go" if remaining else ""
        self._say(
            f"{phase.name}: {total}/{total} agents settled ({cached} cached, {failed} failed), "
            f"${cost:.4f}; {clock_text(self.elapsed_s())} elapsed{left}"
        )


class IssuesLines(IssuesProgress):
    """An issues run as plain lines: what was found, each issue starting and finishing."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console

    def _say(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def listed(self, repo: str, provider: str, issues: list[Issue], concurrency: int) -> None:
        super().listed(repo, provider, issues, concurrency)
        note = f"; {OFFLINE_NOTE}" if provider == "offline" else ""
        self._say(f"{repo}: {len(issues)} issue(s) to work, {concurrency} at a time{note}")

    def issue_started(self, number: int) -> None:
        super().issue_started(number)
        self._say(f"#{number}: working on {self.issues[number].title[:80]!r}")

    def issue_finished(self, result: IssueResult) -> None:
        super().issue_finished(result)
        where = result.pr_url or result.error or ""
        self._say(
            f"#{result.number}: {result.status} {where} ({result.duration_s:.1f}s, "
            f"${result.cost_usd:.4f})".replace("  ", " ")
        )
