"""Generated teams of any size in the shape of the default team, for the scaling runs.

"Same shape" means what drives a run's schedule and cost: the share of roles
per phase, tracks of one lead plus workers, the tier mix (3 opus : 11 sonnet
: 18 haiku in 32) and the fan-in (leads read 1-3 earlier roles, reviewers up
to 6, workers their lead and sometimes another track's work). Dependencies
are drawn from a generator seeded by (seed, size), so a size is always the
same team.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from typing import Any

from blocks.team import PHASES, AgentTeam, Role, default_team
from tasks.build.planning import plan_phases

# Roles per phase in the default team (32 in all), and its mean track size per phase.
PHASE_SHARE = {"planning": 2, "architecture": 5, "implementation": 13, "quality": 7, "ops": 5}
TRACK_SIZE = {
    "planning": 2.0,
    "architecture": 2.5,
    "implementation": 2.6,
    "quality": 3.5,
    "ops": 2.5,
}
TIER_SHARE = {"opus": 3, "sonnet": 11, "haiku": 18}
_ABBR = {"planning": "PLAN", "architecture": "ARCH", "implementation": "IMPL", "quality": "QA"}


def team_of_size(roles: int, seed: int = 7) -> AgentTeam:
    """The default team at 32 roles, a generated one of the same shape at any other size."""
    if roles == len(default_team().roles):
        return default_team()
    return generated_team(roles, seed)


def generated_team(size: int, seed: int = 7) -> AgentTeam:
    if size < len(PHASES):
        raise ValueError(f"a generated team needs at least {len(PHASES)} roles, one per phase")
    digest = hashlib.sha256(f"agentmill-team/{seed}/{size}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    counts = _apportion(size, PHASE_SHARE)
    tracks: dict[str, list[list[str]]] = {}
    deps: dict[str, list[str]] = {}
    for phase in PHASES:
        n_tracks = max(1, round(counts[phase] / TRACK_SIZE[phase]))
        members: list[list[str]] = [[] for _ in range(n_tracks)]
        for i in range(counts[phase]):
            members[i % n_tracks].append("")
        for t, track in enumerate(members):
            for i in range(len(track)):
                kind = "LEAD" if i == 0 else f"DEV{i}"
                track[i] = f"{_ABBR.get(phase, 'OPS')}_T{t + 1}_{kind}"
        tracks[phase] = members
        for t, track in enumerate(members):
            lead = track[0]
            deps[lead] = _lead_deps(phase, t, tracks, rng)
            for worker in track[1:]:
                deps[worker] = [lead, *_worker_extra_deps(phase, tracks, rng)]
    ordered = [role for phase in PHASES for track in tracks[phase] for role in track]
    tiers = _tiers(ordered, tracks)
    roles = [
        Role(
            id=role_id,
            title=f"{'Lead' if role_id.endswith('LEAD') else 'Worker'} {role_id.lower()}",
            phase=_phase_of(role_id, tracks),
            track=f"track{role_id.split('_')[1][1:]}",
            tier=tiers[role_id],
            depends_on=sorted(set(deps[role_id])),
            instructions=f"Generated benchmark role {role_id}: write one document for your part.",
        )
        for role_id in ordered
    ]
    team = AgentTeam(roles=roles)
    plan_phases(team)  # a generated team must plan like a hand-written one
    return team


def _apportion(total: int, shares: dict[str, int]) -> dict[str, int]:
    """Largest-remainder split of `total` by `shares`, then at least one each."""
    weight = sum(shares.values())
    exact = {k: total * v / weight for k, v in shares.items()}
    counts = {k: int(x) for k, x in exact.items()}
    by_remainder = sorted(shares, key=lambda k: exact[k] - counts[k], reverse=True)
    for key in by_remainder[: total - sum(counts.values())]:
        counts[key] += 1
    for key in shares:
        if counts[key] == 0:
            counts[max(counts, key=lambda k: counts[k])] -= 1
            counts[key] = 1
    return counts


def _pick(rng: random.Random, pool: list[str], low: int, high: int) -> list[str]:
    if not pool:
        return []
    return rng.sample(pool, min(len(pool), rng.randint(low, high)))


def _lead_deps(
    phase: str, track: int, tracks: dict[str, list[list[str]]], rng: random.Random
) -> list[str]:
    """A lead reads the phase before it, as the default team's leads and reviewers do."""
    planning = [r for t in tracks["planning"] for r in t]
    arch_leads = [t[0] for t in tracks.get("architecture", [])]
    arch = [r for t in tracks.get("architecture", []) for r in t]
    impl = [r for t in tracks.get("implementation", []) for r in t]
    impl_workers = [r for t in tracks.get("implementation", []) for r in t[1:]] or impl
    if phase == "planning":
        return [] if track == 0 else [planning[0]]
    if phase == "architecture":
        return [planning[0], *_pick(rng, planning[1:], 0, 1)]
    if phase == "implementation":
        return [rng.choice(arch_leads), *_pick(rng, arch, 0, 2)]
    if phase == "quality":
        if track == 0:  # a test lead: the requirements and the architecture
            return [planning[0], arch_leads[0]]
        return _pick(rng, impl_workers, 2, 6)  # a reviewer: the implementation it reviews
    quality = [r for t in tracks["quality"] for r in t]
    return [rng.choice(impl_workers), arch_leads[0], *_pick(rng, quality, 0, 1)]


def _worker_extra_deps(
    phase: str, tracks: dict[str, list[list[str]]], rng: random.Random
) -> list[str]:
    """Besides its lead, a worker sometimes reads another role's work."""
    if phase == "implementation" and rng.random() < 0.3:
        return [rng.choice([r for t in tracks["architecture"] for r in t])]
    if phase == "quality":
        impl_workers = [r for t in tracks["implementation"] for r in t[1:]]
        return _pick(rng, impl_workers, 1, 3)
    if phase == "ops":
        return _pick(rng, [r for t in tracks["quality"] for r in t], 0, 2)
    return []


def _tiers(ordered: list[str], tracks: dict[str, list[list[str]]]) -> dict[str, str]:
    """Quotas in the default team's mix: opus for architecture leads and then reviewers."""
    quota = _apportion(len(ordered), TIER_SHARE)
    leads = [r for r in ordered if r.endswith("LEAD")]
    arch_leads = [t[0] for t in tracks["architecture"]]
    reviewers = [t[0] for t in tracks["quality"][1:]]
    opus_order = arch_leads + reviewers + [r for r in leads if r not in arch_leads + reviewers]
    tiers = dict.fromkeys(ordered, "haiku")
    for role in opus_order[: quota["opus"]]:
        tiers[role] = "opus"
    sonnet_order = [r for r in leads if tiers[r] == "haiku"]
    sonnet_order += [r for r in ordered if tiers[r] == "haiku" and r not in sonnet_order]
    for role in sonnet_order[: quota["sonnet"]]:
        tiers[role] = "sonnet"
    return tiers


def _phase_of(role_id: str, tracks: dict[str, list[list[str]]]) -> str:
    return next(p for p, ts in tracks.items() if any(role_id in t for t in ts))


def team_shape(team: AgentTeam) -> dict[str, Any]:
    """What "same shape" compares: roles per phase, tracks, tier mix, fan-in, depth."""
    plan = plan_phases(team)
    depth: dict[str, int] = {}
    for role_id in plan.order:
        depth[role_id] = 1 + max((depth[d] for d in plan.role_deps(role_id)), default=0)
    fan_in = [len(r.depends_on) for r in team.roles]
    tiers = Counter(r.tier for r in team.roles)
    return {
        "roles": len(team.roles),
        "roles_per_phase": {p.name: len(p.roles) for p in plan.phases},
        "tracks": sum(len(p.tracks) for p in plan.phases),
        "tiers": {t: tiers.get(t, 0) for t in ("opus", "sonnet", "haiku")},
        "mean_fan_in": round(sum(fan_in) / len(fan_in), 2),
        "max_fan_in": max(fan_in),
        "depth": max(depth.values()),
    }
