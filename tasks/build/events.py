"""Prefect events for agents and phases: the Prefect UI's event feed is the dashboard.

Each agent's resource carries its role, phase, model, tokens and cost as
labels, so the feed can be filtered by any of them and automations can
react (e.g. notify when a security review fails).
"""

from __future__ import annotations

from typing import Any, Literal

from prefect.events import emit_event

AgentEvent = Literal["started", "completed", "failed"]


def _flow_run(run_id: str) -> list[dict[str, str]]:
    if run_id == "local":
        return []
    return [
        {"prefect.resource.id": f"prefect.flow-run.{run_id}", "prefect.resource.role": "flow-run"}
    ]


def emit_agent_event(
    kind: AgentEvent,
    *,
    run_id: str,
    role: str,
    phase: str,
    model: str,
    tokens: int = 0,
    cost_usd: float = 0.0,
    cached: bool = False,
    error: str | None = None,
) -> None:
    payload: dict[str, Any] = {"tokens": tokens, "cost_usd": cost_usd, "cached": cached}
    if error:
        payload["error"] = error
    emit_event(
        event=f"agentmill.agent.{kind}",
        resource={
            "prefect.resource.id": f"agentmill.agent.{run_id}.{role}",
            "prefect.resource.name": role,
            "agentmill.role": role,
            "agentmill.phase": phase,
            "agentmill.model": model,
            "agentmill.tokens": str(tokens),
            "agentmill.cost_usd": f"{cost_usd:.6f}",
            "agentmill.cached": str(cached).lower(),
        },
        related=_flow_run(run_id),
        payload=payload,
    )


def emit_phase_committed(run_id: str, phase: str, sha: str, agents: list[str]) -> None:
    emit_event(
        event="agentmill.phase.committed",
        resource={
            "prefect.resource.id": f"agentmill.phase.{run_id}.{phase}",
            "prefect.resource.name": phase,
            "agentmill.phase": phase,
            "agentmill.commit": sha,
        },
        related=_flow_run(run_id),
        payload={"commit": sha, "agents": agents},
    )
