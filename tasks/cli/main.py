"""`agentmill`: the console command ([project.scripts] in pyproject.toml).

    agentmill build IDEA [options]        build an idea, one commit per phase
    agentmill issues --repo OWNER/NAME    work labelled GitHub issues into pull requests
    agentmill serve                       serve every flow, with its schedule
    agentmill doctor                      check what a run needs, and how to fix gaps

`build` and `issues` take the flows' own parameters as options (from
BuildRequest and IssuesRequest), as `python -m flows.build_app` and
`python -m flows.process_issues` do.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from tasks.cli import build, doctor, issues
from tasks.cli.prefect_api import api_ready
from tasks.cli.terminal import make_console

Runner = Callable[[argparse.ArgumentParser, argparse.Namespace], int]


def _serve(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from deployments.serve import main as serve  # imports every flow: only when asked

    if not api_ready(make_console()):
        return build.EXIT_ERROR
    serve()
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="agentmill",
        description="A team of Claude agents that turns an idea, or a GitHub issue, into "
        "committed work, orchestrated by Prefect.",
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    entries: list[tuple[str, str, str, Callable[[argparse.ArgumentParser], None], Runner]] = [
        ("build", "build an idea, one git commit per phase", build.DESCRIPTION,
         build.add_options, build.run),
        ("issues", "work labelled GitHub issues into reviewed pull requests", issues.DESCRIPTION,
         issues.add_options, issues.run),
        ("serve", "serve every flow from this process, with its schedule",
         "Serve build-app and triage-issues from this process (no work pool needed).",
         lambda p: None, _serve),
        ("doctor", "check what a run needs and say how to fix each gap",
         "Check Python, git, the Prefect API, the keys, bubblewrap and the result storage.",
         doctor.add_options, doctor.run),
    ]  # fmt: skip
    for name, summary, description, add_options, runner in entries:
        command = commands.add_parser(name, help=summary, description=description)
        add_options(command)
        command.set_defaults(runner=runner, command_parser=command)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = args.runner(args.command_parser, args)
    return code


def console_main() -> None:
    """The console script's entry point."""
    sys.exit(main())


if __name__ == "__main__":
    console_main()
