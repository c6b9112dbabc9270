"""Serve every agentmill flow from this process, with its schedule; no work pool needed.

    python -m deployments.serve    # or: agentmill serve

Both make sure a Prefect API is up first (tasks.cli.serve: with no
PREFECT_API_URL, a local server started with the time its first start needs).

Needs the same credentials as the flows themselves, found when each run
starts: the `anthropic` and `github` credentials blocks (or the names in the
flows' `credentials` parameters), else ANTHROPIC_API_KEY and GITHUB_TOKEN in
this process's environment. `triage-issues` runs every 30 minutes on the
repository named by AGENTMILL_REPO; without it, its schedule stays paused,
as in prefect.yaml, since it pushes branches and opens PRs on a real repository.
"""

from __future__ import annotations

import os
import sys

from prefect import serve
from prefect.deployments.runner import RunnerDeployment

from flows.build_app import build_app
from flows.process_issues import process_issues

TRIAGE_CRON = "*/30 * * * *"


def deployments() -> list[RunnerDeployment]:
    repo = os.environ.get("AGENTMILL_REPO", "")
    return [
        # from_flow, not flow.to_deployment: the latter dispatches to a coroutine in
        # async contexts, and its declared type says so.
        RunnerDeployment.from_flow(
            build_app,
            name="build-app",
            description="Build an idea with the agent team; one git commit per phase.",
            parameters={"idea": "A todo app with React and FastAPI", "workdir": "out/app"},
            tags=["agentmill"],
        ),
        RunnerDeployment.from_flow(
            process_issues,
            name="triage-issues",
            description="Work the labelled GitHub issues into reviewed pull requests.",
            parameters={"repo": repo or "OWNER/NAME", "clone_dir": "out/issues"},
            cron=TRIAGE_CRON,
            paused=not repo,
            concurrency_limit=1,  # as in prefect.yaml: two runs would share one clone
            tags=["agentmill"],
        ),
    ]


def main() -> None:
    serve(*deployments())


if __name__ == "__main__":
    from tasks.cli.main import main as agentmill  # the API first, then main()

    sys.exit(agentmill(["serve"]))
