"""Small teams for tests that need a real build in a couple of seconds, not the 32 roles."""

from __future__ import annotations

from blocks.team import Role

# A planner and the builder that depends on it: two phases, two commits.
PLANNER_AND_BUILDER = [
    Role(id="PLANNER", title="Planner", phase="planning", track="p", instructions="plan"),
    Role(
        id="BUILDER",
        title="Builder",
        phase="implementation",
        track="i",
        depends_on=["PLANNER"],
        instructions="build",
    ),
]
