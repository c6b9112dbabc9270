"""What the latencies alone allow, computed without running anything.

For a team and a seed, the fake's latency model fixes each agent's model
time (3 requests with the scripted model). From those: the critical path
(no schedule can beat it) and the ideal level-barrier wall (each level as
long as its slowest agent). Their ratio is the most any schedule can gain
over level barriers on that graph, which puts the "15% faster than level
barriers" target in context; over many seeds it shows how much that
depends on the draw.
"""

from __future__ import annotations

from statistics import mean
from typing import Any

from benchmarks.baselines import dependency_levels
from benchmarks.latency import TierLatency
from blocks.team import AgentTeam
from tasks.build.offline_script import REQUESTS_PER_AGENT
from tasks.build.planning import plan_phases
from tasks.build.report import critical_path
from tasks.testing.messages_api import tier_of


def agent_latencies(team: AgentTeam, latency: TierLatency) -> dict[str, float]:
    return {
        role.id: sum(
            latency.delay(tier_of(team.model_for(role)), role.id, step)
            for step in range(REQUESTS_PER_AGENT)
        )
        for role in team.roles
    }


def ideal_walls(team: AgentTeam, latency: TierLatency) -> tuple[float, float]:
    """(critical path, ideal level-barrier wall) of the model time alone."""
    plan = plan_phases(team)
    durations = agent_latencies(team, latency)
    deps = {r: plan.role_deps(r) for r in plan.order}
    cp, _ = critical_path(durations, deps, plan.order)
    levels = sum(max(durations[r] for r in level) for level in dependency_levels(plan))
    return cp, levels


def level_barrier_headroom(team: AgentTeam, seed: int, seeds: int = 20) -> dict[str, Any]:
    """How much faster than level barriers a perfect schedule is, for `seed` and over seeds."""

    def headroom(s: int) -> float:
        cp, levels = ideal_walls(team, TierLatency(seed=s))
        return 1 - cp / levels

    spread = [headroom(s) for s in range(1, seeds + 1)]
    return {
        "seed": round(headroom(seed), 3),
        "seeds": seeds,
        "mean": round(mean(spread), 3),
        "min": round(min(spread), 3),
        "max": round(max(spread), 3),
    }
