"""Serve agentmill's flows from this process, no work pool needed.

python -m deployments.serve
"""

from __future__ import annotations

from prefect import serve

from flows.build_app import build_app


def main() -> None:
    serve(
        build_app.to_deployment(
            name="build-app",
            description="Build an idea with the agent team; one git commit per phase.",
            parameters={"idea": "A todo app with React and FastAPI", "workdir": "out/app"},
        ),
    )


if __name__ == "__main__":
    main()
