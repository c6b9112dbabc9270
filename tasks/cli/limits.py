"""`agentmill limits apply|show|clear`: the fleet's rate limits, as Prefect global concurrency
limits on the server every worker talks to (see tasks.model.limits for how runs take them).

    agentmill limits apply --team my-team              # the team block's tier limits
    agentmill limits apply --rpm haiku=50 --in-flight haiku=8
    python -m tasks.cli.limits apply --rpm sonnet=50   # the same, without the console command

Values from flags win over the team block's `tier_requests_per_minute` and
`tier_max_in_flight`. A per-minute limit becomes a `rate_limit` whose bucket
holds a tenth of the minute's requests and refills the rest over the minute,
so no 60 s window sees more than the limit (a bucket that starts full and
refills the whole limit per minute would let twice the limit through in the
first minute). Prefect's rule: `rate_limit()` needs `slot_decay_per_second`
(the docstring of prefect.concurrency.asyncio.rate_limit).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from tasks.common.errors import AgentmillError
from tasks.model.limits import TIERS, forget_limits, in_flight_name, per_minute_name

DESCRIPTION = (
    "Create or update the Prefect global concurrency limits every agentmill run of the fleet "
    "takes around each model request: requests in flight and requests per minute, per tier."
)


class BadLimit(AgentmillError, ValueError):
    """A limit given on the command line is not TIER=N with a known tier and N >= 1."""


@dataclass(frozen=True)
class LimitSpec:
    name: str
    limit: int
    slot_decay_per_second: float | None  # None: a plain concurrency limit


def per_minute_spec(tier: str, requests: int, window_s: float = 60.0) -> LimitSpec:
    """A rate limit that keeps any `window_s` window at or under `requests` requests.

    A bucket of `burst` slots refilled at (requests - burst) / window_s: a window
    sees at most the full bucket plus one window's refill, which is `requests`.
    """
    burst = max(1, requests // 10)
    return LimitSpec(per_minute_name(tier), burst, max(requests - burst, 1) / window_s)


def in_flight_spec(tier: str, limit: int) -> LimitSpec:
    return LimitSpec(in_flight_name(tier), limit, None)


def specs(rpm: dict[str, int], in_flight: dict[str, int]) -> list[LimitSpec]:
    return [per_minute_spec(t, n) for t, n in sorted(rpm.items())] + [
        in_flight_spec(t, n) for t, n in sorted(in_flight.items())
    ]


def _pairs(values: Sequence[str], flag: str) -> dict[str, int]:
    parsed: dict[str, int] = {}
    for value in values:
        tier, _, number = value.partition("=")
        if tier not in TIERS or not number.isdigit() or int(number) < 1:
            raise BadLimit(
                f"{flag} {value!r}: give TIER=N with TIER one of {', '.join(TIERS)} and N >= 1, "
                f"e.g. {flag} haiku=50"
            )
        parsed[tier] = int(number)
    return parsed


async def apply_limits(wanted: list[LimitSpec]) -> list[str]:
    """Create each limit, or update it in place (so slots in use are kept); lines to print."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import (
        GlobalConcurrencyLimitCreate,
        GlobalConcurrencyLimitUpdate,
    )
    from prefect.exceptions import ObjectNotFound

    lines = []
    async with get_client() as client:
        for spec in wanted:
            fields = {
                "limit": spec.limit,
                "active": True,
                "slot_decay_per_second": spec.slot_decay_per_second or 0.0,  # 0: no decay
            }
            try:
                await client.read_global_concurrency_limit_by_name(spec.name)
            except ObjectNotFound:
                await client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=spec.name, **fields)
                )
                verb = "created"
            else:
                await client.update_global_concurrency_limit(
                    spec.name, GlobalConcurrencyLimitUpdate(**fields)
                )
                verb = "updated"
            decay = (
                f", refills {spec.slot_decay_per_second:.3g}/s"
                if spec.slot_decay_per_second
                else ""
            )
            lines.append(f"{verb} {spec.name}: limit {spec.limit}{decay}")
    forget_limits()  # this process's builds take them from their next request
    return lines


async def clear_limits() -> list[str]:
    """Delete every agentmill limit: runs then take none (and are not slowed)."""
    from prefect.client.orchestration import get_client

    lines = []
    async with get_client() as client:
        for limit in await client.read_global_concurrency_limits(limit=200):
            if limit.name.startswith("agentmill-"):
                await client.delete_global_concurrency_limit_by_name(limit.name)
                lines.append(f"deleted {limit.name}")
    forget_limits()
    return lines


async def show_limits() -> list[str]:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        limits = await client.read_global_concurrency_limits(limit=200)
    return [
        f"{lim.name}: limit {lim.limit}, {lim.active_slots} in use"
        + (f", refills {lim.slot_decay_per_second:.3g}/s" if lim.slot_decay_per_second else "")
        for lim in limits
        if lim.name.startswith("agentmill-")
    ] or ["no agentmill limits: runs take none"]


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("apply", "show", "clear"))
    parser.add_argument("--team", help="an AgentTeam block whose tier limits to apply")
    parser.add_argument(
        "--rpm", action="append", default=[], metavar="TIER=N",
        help="model requests per minute for a tier, fleet-wide (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--in-flight", action="append", default=[], metavar="TIER=N",
        help="model requests in flight at once for a tier, fleet-wide (repeatable)",
    )  # fmt: skip


async def _action(args: argparse.Namespace) -> list[str]:
    if args.action == "show":
        return await show_limits()
    if args.action == "clear":
        return await clear_limits()
    rpm, in_flight = {}, {}
    if args.team:
        from tasks.build.planning import aload_team

        team = await aload_team(args.team)
        rpm, in_flight = dict(team.tier_requests_per_minute), dict(team.tier_max_in_flight)
    rpm.update(_pairs(args.rpm, "--rpm"))
    in_flight.update(_pairs(args.in_flight, "--in-flight"))
    wanted = specs(rpm, in_flight)
    if not wanted:
        raise BadLimit("nothing to apply: give --rpm or --in-flight, or a --team with tier limits")
    return await apply_limits(wanted)


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """The `agentmill limits` subcommand (tasks.cli.main registers it)."""
    try:
        lines = asyncio.run(_action(args))
    except AgentmillError as exc:
        print(f"agentmill: error: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agentmill limits", description=DESCRIPTION)
    add_options(parser)
    return run(parser, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
