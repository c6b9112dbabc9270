"""`agentmill build IDEA [options]` (and `python -m flows.build_app`): a build, shown as it runs.

The options come from BuildRequest (tasks.common.parameters), plus
`--verbose` for Prefect's own log lines. Exit codes: 0 built and checked
(or nothing to check), 1 an error that says what to fix, 2 a usage error,
3 the budget ran out, 4 built but its checks fail, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from flows.build_app import CHECKS_FAILED, BuildRequest, BuildResult, abuild_app
from tasks.build.watch import BUILD_WATCHER
from tasks.cli.history import record
from tasks.cli.live import BuildLines, render_build, shown
from tasks.cli.prefect_api import api_ready
from tasks.cli.progress import BuildProgress
from tasks.cli.summary import build_summary, failed_build_summary
from tasks.cli.terminal import error, is_live, make_console, note
from tasks.common.errors import AgentmillError
from tasks.common.parameters import add_arguments, checked_arguments
from tasks.model.budget import BudgetExhausted

DESCRIPTION = "Build an idea with a team of Claude agents; one git commit per phase."
EXIT_ERROR, EXIT_BUDGET, EXIT_INTERRUPTED = 1, 3, 130


def add_options(parser: argparse.ArgumentParser) -> None:
    add_arguments(parser, BuildRequest, positional=("idea",))
    add_view_options(parser)


def add_view_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show Prefect's own log lines too (they always reach the Prefect API)",
    )


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Run the build the parsed arguments describe; the exit code says how it went."""
    params = checked_arguments(parser, BuildRequest, args)
    console = make_console()
    if not api_ready(console):
        return EXIT_ERROR
    progress: BuildProgress = BuildProgress() if is_live(console) else BuildLines(console)
    try:
        result = shown(
            console,
            BUILD_WATCHER,
            progress,
            lambda: render_build(progress),
            lambda: asyncio.run(abuild_app(**params)),
            verbose=args.verbose,
        )
    except KeyboardInterrupt:
        error("interrupted; committed phases stay, and a rerun continues from the cache")
        return EXIT_INTERRUPTED
    except BudgetExhausted as exc:
        console.print(failed_build_summary(progress))
        print(f"agentmill: {exc}", file=sys.stderr)
        return EXIT_BUDGET
    except AgentmillError as exc:  # ours say what to fix; anything else is a bug: traceback
        if progress.phases:
            console.print(failed_build_summary(progress))
            _point_at_report(console, progress)
        error(str(exc))
        return EXIT_ERROR
    finally:
        if progress.history_key:
            record(progress.history_key, progress.real_durations())
    console.print(build_summary(result, progress))
    return exit_code(result)


def exit_code(result: BuildResult) -> int:
    """0 when built (and checked, where checks ran); 4 when built but its checks fail."""
    return CHECKS_FAILED if result.verification.status == "failed" else 0


def _point_at_report(console: Console, progress: BuildProgress) -> None:
    report = Path(progress.workdir) / ".tasks" / "report.json"
    if report.exists():
        note(console, f"report: {report}")


def main(argv: Sequence[str] | None = None, prog: str = "agentmill build") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    add_options(parser)
    return run(parser, parser.parse_args(argv))
