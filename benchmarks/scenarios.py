"""One group of benchmark runs, in a process of its own: `python -m benchmarks.scenarios SPEC OUT`.

The harness starts one such process per team size, so each size's peak RSS
(`ru_maxrss`, a process-lifetime maximum) is its own. Inside, the runs go one
after another, each with its own workdir, its own result-storage path and
its own idea string, so no cache leaks from one run into the next except
where a rerun is meant to hit it. Model requests go to the harness's fake
under each run's tag; the fake's log, not these numbers, is what requests and
the critical path are counted from. Each Prefect run also reports what it
cost on the API (requests per operation, 503s, the client's back-offs) and
how long the server took to record it afterwards (see benchmarks.probes).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

if TYPE_CHECKING:
    from benchmarks.probes import ApiCalls, Backoffs

DUMMY_KEY = "sk-ant-benchmark-dummy-key"


def main(argv: list[str]) -> int:
    spec_path, out_path = Path(argv[0]), Path(argv[1])
    spec: dict[str, Any] = json.loads(spec_path.read_text())
    started = time.perf_counter()
    # Imported here, after the harness set PREFECT_API_URL in the environment.
    from benchmarks.floor import warm_up
    from benchmarks.probes import ApiCalls, Backoffs
    from benchmarks.teams import team_of_size

    imported_s = time.perf_counter() - started
    os.environ["ANTHROPIC_API_KEY"] = DUMMY_KEY
    probes = Probes(ApiCalls(), Backoffs(), records=bool(spec.get("records", True)))
    probes.calls.install()
    probes.backoffs.install()
    warm = time.perf_counter()
    warm_up()  # an embedded server starts here, on the process's first flow call
    warm_up_s = time.perf_counter() - warm
    team = team_of_size(spec["roles"], spec["seed"])
    results: dict[str, Any] = {
        "roles": len(team.roles),
        "import_s": round(imported_s, 3),
        "warm_up_s": round(warm_up_s, 3),
        "runs": {},
    }
    for run in spec["runs"]:
        results["runs"][run["name"]] = _run(run, team, spec, probes)
    # Linux reports ru_maxrss in KiB.
    results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out_path.write_text(json.dumps(results, indent=2))
    return 0


@dataclass
class Probes:
    """This process's counters (see benchmarks.probes) and whether its server records runs."""

    calls: ApiCalls
    backoffs: Backoffs
    records: bool

    def watched(self, run: Callable[[], tuple[dict[str, Any], str | None, int]]) -> dict[str, Any]:
        """Run a Prefect run and add what it cost on the API; then let the server catch up.

        `run` returns its figures, its flow run id and how many task runs it made.
        """
        from benchmarks.probes import settle, summarise_calls

        began = time.monotonic()
        with self.calls.window() as calls:
            figures, run_id, tasks = run()
        ended = time.monotonic()
        figures["api"] = summarise_calls(calls)
        figures["api_requests"] = len(calls)
        # Each request's start and length: benchmarks.breakdown splits
        # the zero-latency wall into what Prefect and what agentmill spent it on.
        # From the start of the timed call (a custom team's block is saved before it).
        origin = figures.get("began_monotonic", began)
        figures["api_timeline"] = [
            [round(c.at - origin, 4), round(c.seconds, 4), c.operation, c.status] for c in calls
        ]
        figures["client_backoffs"] = self.backoffs.between(began, ended)
        if self.records and run_id is not None:
            figures["recorded_after_s"] = asyncio.run(settle(run_id, tasks))
        return figures


def _run(run: dict[str, Any], team: Any, spec: dict[str, Any], probes: Probes) -> dict[str, Any]:
    from benchmarks.baselines import run_baseline
    from benchmarks.floor import empty_flow_calls, run_floor
    from tasks.build.planning import plan_phases
    from tasks.model.endpoint import Endpoint

    if run.get("team_overrides"):  # a variant of the team (benchmarks.caching)
        team = type(team).model_validate({**team.model_dump(), **run["team_overrides"]})
    plan = plan_phases(team)
    workdir = Path(run["workdir"])
    if run["kind"] == "baseline":
        endpoint = Endpoint("anthropic", base_url=run["base_url"], api_key=SecretStr(DUMMY_KEY))
        began = time.monotonic()
        baseline = run_baseline(run["schedule"], plan, team, run["idea"], workdir, endpoint)
        return {
            **_span(began),
            "wall_s": round(baseline.wall_s, 4),
            "levels": baseline.levels,
            "started_s": baseline.started_s,
            "duration_s": baseline.duration_s,
        }
    if run["kind"] == "floor":

        def floor() -> tuple[dict[str, Any], str | None, int]:
            wall, inner, run_id = run_floor(plan)
            figures = {"wall_s": round(wall, 4), "build_wall_s": round(inner, 4)}
            return figures, run_id, len(plan.order)

        return probes.watched(floor)
    if run["kind"] == "empty_flows":
        return {name: round(seconds, 4) for name, seconds in empty_flow_calls().items()}
    if run["kind"] == "agentmill":
        changed = run.get("change_role")
        if changed:
            team = team.model_copy(deep=True)
            for role in team.roles:
                if role.id == changed:
                    role.instructions += " Revised: cover the edge cases too."
        return {**probes.watched(lambda: _agentmill(run, team)), "change_role": changed}
    raise ValueError(f"unknown run kind {run['kind']!r}")


def _agentmill(run: dict[str, Any], team: Any) -> tuple[dict[str, Any], str | None, int]:
    """build_app as a user runs it: provider anthropic, the key and base URL from the env."""
    from prefect.settings import PREFECT_RESULTS_LOCAL_STORAGE_PATH, temporary_settings
    from rich.console import Console

    from blocks.team import default_team
    from flows.build_app import abuild_app, build_app
    from tasks.cli.terminal import prefect_logs

    team_name = "default"
    # No verification in the orchestration runs: the baselines do not run checks either
    # (benchmarks/verification.py measures what verification costs).
    team = team.model_copy(update={"verify": False})
    if team.model_dump() != default_team().model_dump():
        team_name = f"bench-{len(team.roles)}-{uuid.uuid4().hex[:8]}"
        team.save(team_name)  # a custom team is a block, as a user saves one
    os.environ["ANTHROPIC_BASE_URL"] = run["base_url"]
    params = {"idea": run["idea"], "workdir": run["workdir"], "team": team_name}
    with temporary_settings(updates={PREFECT_RESULTS_LOCAL_STORAGE_PATH: run["storage"]}):
        began, started = time.monotonic(), time.perf_counter()
        if run.get("sync"):  # from sync Python code: the sync flow, Prefect's console lines on
            result = build_app(**params, provider="anthropic")
        else:  # as the command line runs it: the async flow, Prefect's lines at warnings
            with prefect_logs(Console(file=sys.stderr), verbose=False):
                result = asyncio.run(abuild_app(**params, provider="anthropic"))
        wall = time.perf_counter() - started
    figures = {
        **_span(began),
        "wall_s": round(wall, 4),
        "build_wall_s": result.metrics.wall_s,
        "status": result.status,
        "commits": len(result.commits),
        "model_requests": result.metrics.model_requests,
        "cached_agents": result.metrics.cached_agents,
        "rerun_roles": sorted(a.role for a in result.agents if not a.cached),
        "critical_path_measured_s": result.metrics.critical_path_s,
        "agents": [a.model_dump() for a in result.agents],
    }
    return figures, result.run_id, len(result.agents)


def _span(began: float) -> dict[str, float]:
    """When a call began and ended on CLOCK_MONOTONIC, which is system-wide on Linux: the
    harness lines these up with the times the fake saw each request."""
    return {"began_monotonic": began, "ended_monotonic": time.monotonic()}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
