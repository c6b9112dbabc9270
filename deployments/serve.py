"""Serve every agentmill flow from this process, with its schedule; no work pool needed.

    python -m deployments.serve

Needs the same credentials as the flows themselves (ANTHROPIC_API_KEY in this
process's environment, or `credentials` naming an AnthropicCredentials block).
"""

from __future__ import annotations

from prefect import serve
from prefect.deployments.runner import RunnerDeployment

from flows.build_app import build_app


def deployments() -> list[RunnerDeployment]:
    return [
        build_app.to_deployment(
            name="build-app",
            description="Build an idea with the agent team; one git commit per phase.",
            parameters={"idea": "A todo app with React and FastAPI", "workdir": "out/app"},
            tags=["agentmill"],
        ),
    ]


def main() -> None:
    serve(*deployments())


if __name__ == "__main__":
    main()
