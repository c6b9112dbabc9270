"""`agentmill`: the console command ([project.scripts] in pyproject.toml).

    agentmill build IDEA [options]        build an idea, one commit per phase
    agentmill issues --repo OWNER/NAME    work labelled GitHub issues into pull requests
    agentmill serve                       serve every flow, with its schedule
    agentmill doctor                      check what a run needs, and how to fix gaps
    agentmill limits apply|show|clear     the fleet's rate limits (Prefect global limits)

`build` and `issues` take the flows' own parameters as options (from
BuildRequest and IssuesRequest), as `python -m flows.build_app` and
`python -m flows.process_issues` do.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Protocol, cast


class Command(Protocol):
    """What each tasks.cli module of a subcommand provides."""

    DESCRIPTION: str

    def add_options(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, parser: argparse.ArgumentParser, args: argparse.Namespace) -> int: ...


# Name, module and one-line summary. A module is imported only when its command runs:
# `build` and `issues` import the flows (and Prefect's server), which takes seconds on a
# loaded machine, and `agentmill doctor` or `agentmill --help` should not wait for that.
COMMANDS = {
    "build": ("tasks.cli.build", "build an idea, one git commit per phase"),
    "issues": ("tasks.cli.issues", "work labelled GitHub issues into reviewed pull requests"),
    "serve": ("tasks.cli.serve", "serve every flow from this process, with its schedule"),
    "doctor": ("tasks.cli.doctor", "check what a run needs and say how to fix each gap"),
    "limits": ("tasks.cli.limits", "apply, show or clear the fleet's rate limits per model tier"),
}


def parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The command line, with the options of the command `argv` names (only that one's)."""
    top = argparse.ArgumentParser(
        prog="agentmill",
        description="A team of Claude agents that turns an idea, or a GitHub issue, into "
        "committed work, orchestrated by Prefect.",
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((arg for arg in argv if not arg.startswith("-")), None)
    for name, (module_name, summary) in COMMANDS.items():
        if name != chosen:
            commands.add_parser(name, help=summary)
            continue
        module = cast(Command, importlib.import_module(module_name))
        command = commands.add_parser(name, help=summary, description=module.DESCRIPTION)
        module.add_options(command)
        command.set_defaults(runner=module.run, command_parser=command)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser(argv).parse_args(argv)
    code: int = args.runner(args.command_parser, args)
    return code


def console_main() -> None:
    """The console script's entry point."""
    sys.exit(main())


if __name__ == "__main__":
    console_main()
