"""From a team to a plan: ordered phases of tracks, and the dependency graph.

Every check here runs before a single model call, so a broken team costs
nothing; each error names the roles involved so the fix is obvious.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cached_property

from pydantic import BaseModel

from blocks.team import AgentTeam, Role, checks_id, default_team
from tasks.agents.graph import CycleError, topological_order
from tasks.common.errors import AgentmillError


class PlanError(AgentmillError, ValueError):
    """The team cannot be planned: a cycle, an unknown or duplicate role, a bad phase."""


class Track(BaseModel):
    name: str
    roles: list[str]


class Phase(BaseModel):
    name: str
    tracks: list[Track]

    @property
    def roles(self) -> list[str]:
        return [role for track in self.tracks for role in track.roles]


class Plan(BaseModel):
    """Phases in commit order; `order` is one topological order of every role.

    Each phase with roles also has a checks node (`checks_id(phase)`): it
    depends on the phase's roles and on the previous phase's checks node,
    and roles of later phases may depend on it to read the verdict. `nodes`
    is every node, roles and checks, phase by phase: a topological order.
    """

    phases: list[Phase]
    roles: dict[str, Role]
    order: list[str]
    checks: dict[str, list[str]] = {}  # checks node id -> what it waits for
    nodes: list[str] = []

    def deps(self, node_id: str) -> list[str]:
        if node_id in self.checks:
            return self.checks[node_id]
        return self.roles[node_id].depends_on

    def role_deps(self, node_id: str) -> list[str]:
        """The roles a node waits for: its dependencies, each checks node replaced by its roles.

        What a schedule without checks nodes (the benchmark's baselines, the
        critical path) sees of the graph.
        """
        roles: set[str] = set()
        for dep in self.deps(node_id):
            roles.update(self.role_deps(dep) if dep in self.checks else [dep])
        return [r for r in self.order if r in roles]

    @cached_property
    def ancestors(self) -> dict[str, frozenset[str]]:
        """Transitive dependencies of each node: what it may read, and what its key hashes."""
        result: dict[str, frozenset[str]] = {}
        for node_id in self.nodes or self.order:
            deps = self.deps(node_id)
            result[node_id] = frozenset(deps).union(*(result[d] for d in deps))
        return result

    def descendants(self, node_id: str) -> set[str]:
        return {r for r in self.order if node_id in self.ancestors[r]}

    def phase_of(self, node_id: str) -> str:
        if node_id in self.checks:
            return next(p.name for p in self.phases if checks_id(p.name) == node_id)
        return self.roles[node_id].phase

    def ordered(self, role_ids: Iterable[str]) -> list[str]:
        """The given roles in the plan's topological order."""
        wanted = set(role_ids)
        return [r for r in self.order if r in wanted]


class TeamNotFound(AgentmillError, ValueError):
    """The team named is neither "default" nor a saved AgentTeam block."""


async def aload_team(name: str) -> AgentTeam:
    """The team called `name`: the built-in one for "default", else an AgentTeam block."""
    if name == "default":
        return default_team()
    try:
        team = await AgentTeam.aload(name)
    except ValueError as exc:
        raise TeamNotFound(
            f"no AgentTeam block named {name!r}; save one with AgentTeam(...).save({name!r}) "
            "or use the team 'default'"
        ) from exc
    assert isinstance(team, AgentTeam)
    return team


def plan_phases(team: AgentTeam) -> Plan:
    """Validate the team and order it: phases as the team lists them, roles topologically."""
    if not team.roles:
        raise PlanError("the team has no roles; add at least one role to the AgentTeam")
    repeated = sorted({name for name in team.phases if team.phases.count(name) > 1})
    if repeated:
        raise PlanError(
            f"the team lists phase {', '.join(repeated)} more than once "
            f"({', '.join(team.phases)}); each phase commits once, so name each phase once"
        )
    roles = _unique_roles(team.roles)
    phase_index = {name: i for i, name in enumerate(team.phases)}
    for role in roles.values():
        if role.phase not in phase_index:
            raise PlanError(
                f"role {role.id} is in phase {role.phase!r}, which is not one of the team's "
                f"phases ({', '.join(team.phases)})"
            )
        try:
            team.model_for(role)  # an unknown tier is a planning error too
        except ValueError as exc:
            raise PlanError(str(exc)) from None
    _check_dependencies(roles, phase_index, team.phases)
    order: list[str] = []
    nodes: list[str] = []
    phases: list[Phase] = []
    checks: dict[str, list[str]] = {}
    previous: str | None = None
    for name in team.phases:
        members = {r.id: r.depends_on for r in roles.values() if r.phase == name}
        if not members:
            continue
        try:
            in_phase = topological_order(members)
        except CycleError as exc:
            raise PlanError(
                "the team's dependencies form a cycle: "
                + " -> ".join(exc.cycle)
                + "; remove one of these dependencies"
            ) from None
        tracks: dict[str, list[str]] = {}
        for role_id in in_phase:
            tracks.setdefault(roles[role_id].track, []).append(role_id)
        phases.append(Phase(name=name, tracks=[Track(name=t, roles=r) for t, r in tracks.items()]))
        checks[checks_id(name)] = [*in_phase, *([previous] if previous else [])]
        previous = checks_id(name)
        order += in_phase
        nodes += [*in_phase, previous]
    return Plan(phases=phases, roles=roles, order=order, checks=checks, nodes=nodes)


def _unique_roles(roles: list[Role]) -> dict[str, Role]:
    by_id: dict[str, Role] = {}
    for role in roles:
        if role.id in by_id:
            raise PlanError(f"role {role.id} is defined twice; give each role a unique id")
        by_id[role.id] = role
    return by_id


def _check_dependencies(
    roles: dict[str, Role], phase_index: dict[str, int], phases: list[str]
) -> None:
    checks = {checks_id(p): p for p in phases}
    for role in roles.values():
        for dep in role.depends_on:
            if dep in checks:
                if phase_index[checks[dep]] >= phase_index[role.phase]:
                    raise PlanError(
                        f"role {role.id} (phase {role.phase}) depends on {dep}, the checks of "
                        f"phase {checks[dep]}, which run after that phase's roles; depend on "
                        "an earlier phase's checks"
                    )
                continue
            if dep not in roles:
                raise PlanError(
                    f"role {role.id} depends on {dep}, which is not in the team; "
                    "add that role or remove the dependency"
                )
            if phase_index[roles[dep].phase] > phase_index[role.phase]:
                raise PlanError(
                    f"role {role.id} (phase {role.phase}) depends on {dep} "
                    f"(phase {roles[dep].phase}), a later phase; phases commit in order, "
                    "so move one of them"
                )
