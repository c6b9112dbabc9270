"""plan_phases: the default team's shape, and an error naming the roles for each broken team."""

from __future__ import annotations

import pytest

from blocks.team import AgentTeam, Role, default_team
from tasks.agents.loop import pointer_tokens
from tasks.build.planning import PlanError, plan_phases


def _role(
    id: str, phase: str = "planning", deps: list[str] | None = None, tier: str = "haiku"
) -> Role:
    return Role(
        id=id, title=id, phase=phase, track="t", tier=tier, depends_on=deps or [], instructions="x"
    )


def test_default_team_is_a_software_company() -> None:
    team = default_team()
    plan = plan_phases(team)
    assert len(plan.order) >= 30
    assert [p.name for p in plan.phases] == [
        "planning",
        "architecture",
        "implementation",
        "quality",
        "ops",
    ]
    implementation = next(p for p in plan.phases if p.name == "implementation")
    tracks = {t.name for t in implementation.tracks}
    assert {"web_ui", "core_api", "core_systems", "platform", "integrations"} <= tracks
    for track in implementation.tracks:
        tiers = {plan.roles[r].tier for r in track.roles}
        assert "sonnet" in tiers and "haiku" in tiers  # a lead and a developer per track
    tiers = [r.tier for r in team.roles]
    assert tiers.count("opus") <= 4 and tiers.count("haiku") > len(tiers) / 2
    for role in ("PM", "ARCHITECT", "UI_DESIGNER", "UX_DESIGNER", "TEST_LEAD",
                 "CODE_QUALITY_REVIEWER", "SECURITY_REVIEWER", "DEVOPS"):  # fmt: skip
        assert role in plan.roles
    # topological: every dependency comes first, checks nodes included
    position = {r: i for i, r in enumerate(plan.nodes)}
    for node in plan.nodes:
        assert all(position[d] < position[node] for d in plan.deps(node))
    assert plan.order == [n for n in plan.nodes if not n.startswith("CHECKS_")]
    # each phase's checks wait for its roles and the checks before; reviewers read them
    assert set(plan.checks["CHECKS_QUALITY"]) == {*plan.phases[3].roles, "CHECKS_IMPLEMENTATION"}
    assert "CHECKS_IMPLEMENTATION" in plan.deps("CODE_QUALITY_REVIEWER")
    assert "CORE_DEV" in plan.ancestors["CODE_QUALITY_REVIEWER"]


def test_pointer_message_is_well_under_100_tokens() -> None:
    assert max(pointer_tokens(r) for r in default_team().roles) < 60


def test_ancestors_and_descendants() -> None:
    plan = plan_phases(default_team())
    assert plan.ancestors["UX_RESEARCHER"] == {"PM"}
    assert "PM" in plan.ancestors["RELEASE_MANAGER"]
    assert plan.descendants("RELEASE_MANAGER") == set()
    assert "WEB_DEV" in plan.descendants("UX_DESIGNER")


def test_cycle_is_named() -> None:
    team = AgentTeam(roles=[_role("A", deps=["C"]), _role("B", deps=["A"]), _role("C", deps=["B"])])
    with pytest.raises(PlanError, match=r"cycle: A -> C -> B -> A"):
        plan_phases(team)


@pytest.mark.parametrize(
    ("roles", "message"),
    [
        ([_role("A", deps=["GHOST"])], r"A depends on GHOST, which is not in the team"),
        ([_role("A"), _role("A")], r"role A is defined twice"),
        (
            [_role("A", "planning", ["B"]), _role("B", "ops")],
            r"role A \(phase planning\) depends on B \(phase ops\), a later phase",
        ),
        ([_role("A", tier="gpt")], r"role A names tier 'gpt'"),
        ([_role("A", phase="nowhere")], r"role A is in phase 'nowhere'"),
        ([], r"the team has no roles"),
    ],
)
def test_broken_teams_are_refused_with_the_roles_named(roles: list[Role], message: str) -> None:
    with pytest.raises(PlanError, match=message):
        plan_phases(AgentTeam(roles=roles))


def test_a_role_may_read_only_an_earlier_phases_checks() -> None:
    team = AgentTeam(roles=[_role("A"), _role("B", "implementation", ["CHECKS_IMPLEMENTATION"])])
    with pytest.raises(
        PlanError, match=r"B \(phase implementation\) depends on CHECKS_IMPLEMENTATION"
    ):
        plan_phases(team)
    ok = AgentTeam(roles=[_role("A"), _role("B", "implementation", ["CHECKS_PLANNING"])])
    assert plan_phases(ok).ancestors["B"] == {"CHECKS_PLANNING", "A"}


def test_a_phase_listed_twice_is_refused_before_anything_runs() -> None:
    """On main, the roles of a repeated phase were planned, and run, twice."""
    team = AgentTeam(
        roles=[_role("A"), _role("B", "ops", ["A"])], phases=["planning", "ops", "planning"]
    )
    with pytest.raises(PlanError, match=r"lists phase planning more than once"):
        plan_phases(team)
