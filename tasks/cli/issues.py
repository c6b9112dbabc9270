"""`agentmill issues --repo OWNER/NAME [options]` (and `python -m flows.process_issues`).

The options come from IssuesRequest (tasks.common.parameters), plus
`--verbose`. Exit codes: 0 every issue worked (or none to work), 1 an error
or a failed issue (the summary says which and why), 2 a usage error, 130
interrupted.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from flows.process_issues import IssuesRequest, process_issues
from tasks.cli.build import EXIT_ERROR, EXIT_INTERRUPTED, add_view_options
from tasks.cli.history import record
from tasks.cli.live import IssuesLines, render_issues, shown
from tasks.cli.prefect_api import api_ready
from tasks.cli.progress import IssuesProgress
from tasks.cli.summary import issues_summary
from tasks.cli.terminal import error, is_live, make_console
from tasks.common.errors import AgentmillError
from tasks.common.parameters import add_arguments, checked_arguments
from tasks.issues.watch import ISSUES_WATCHER

DESCRIPTION = "Work labelled GitHub issues into reviewed pull requests with Claude agents."


def add_options(parser: argparse.ArgumentParser) -> None:
    add_arguments(parser, IssuesRequest)
    add_view_options(parser)


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    params = checked_arguments(parser, IssuesRequest, args)
    console = make_console()
    if not api_ready(console):
        return EXIT_ERROR
    progress: IssuesProgress = IssuesProgress() if is_live(console) else IssuesLines(console)
    try:
        summary = shown(
            console,
            ISSUES_WATCHER,
            progress,
            lambda: render_issues(progress),
            lambda: process_issues(**params),
            verbose=args.verbose,
        )
    except KeyboardInterrupt:
        error("interrupted; opened pull requests stay, and a rerun skips them")
        return EXIT_INTERRUPTED
    except AgentmillError as exc:  # ours say what to fix; anything else is a bug: traceback
        error(str(exc))
        return EXIT_ERROR
    finally:
        if progress.repo:
            record(progress.history_key, progress.durations_to_record())
    console.print(issues_summary(summary))
    return EXIT_ERROR if summary.failed else 0


def main(argv: Sequence[str] | None = None, prog: str = "agentmill issues") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    add_options(parser)
    return run(parser, parser.parse_args(argv))
