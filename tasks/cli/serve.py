"""`agentmill serve`: every flow served from this process, with its schedule (no work pool)."""

from __future__ import annotations

import argparse

from tasks.cli.prefect_api import api_ready
from tasks.cli.terminal import make_console

DESCRIPTION = "Serve build-app and triage-issues from this process (no work pool needed)."
EXIT_ERROR = 1


def add_options(parser: argparse.ArgumentParser) -> None:
    """No options: deployments/serve.py reads AGENTMILL_REPO for triage-issues' repository."""


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if not api_ready(make_console()):
        return EXIT_ERROR
    from deployments.serve import main as serve  # imports every flow, once the API is up

    serve()
    return 0
