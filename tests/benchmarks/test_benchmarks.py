"""The benchmark harness at a tiny scale: its accounting, not its timings.

Runs `benchmarks.run` end to end (fake Messages API, the runs in a process of
their own, the session's Prefect server) on an 8-role generated team with
latencies scaled down 20x and no extra scaling sizes, then checks what it counted:
requests, cache hits, the incremental set, the critical path as a lower
bound. No assertion here depends on how fast the machine is.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from benchmarks.bounds import agent_latencies, ideal_walls
from benchmarks.latency import TierLatency
from benchmarks.run import Options, run_benchmark
from benchmarks.teams import generated_team, team_shape
from blocks.team import default_team
from tasks.build.offline_script import REQUESTS_PER_AGENT as PER_AGENT

REQUIRED_KEYS = {
    "date",
    "machine",
    "roles",
    "sequential_s",
    "level_barrier_s",
    "agentmill_s",
    "critical_path_s",
    "overhead_ms_per_task",
    "cached_rerun_s",
    "cached_rerun_requests",
    "incremental_requests",
    "incremental_expected_requests",
    "commits",
    "context_tokens_per_agent",
    "peak_rss_mb",
    "scaling",
}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("bench")
    options = Options(
        roles=8,
        scales=(),
        latency_scale=0.05,
        api_url=os.environ["PREFECT_API_URL"],  # the session's server (tests/conftest.py)
        all_services=False,
        samples=1,
        fleet=False,  # tests/fleet covers the fleet; its benchmark runs in benchmarks.run only
        caching=False,  # tests/benchmarks/test_caching.py covers it, at a unit's cost
    )
    return run_benchmark(out, options), out


def test_results_have_every_key_and_the_files(results: tuple[dict[str, Any], Path]) -> None:
    r, out = results
    assert set(r) >= REQUIRED_KEYS
    assert json.loads((out / "results.json").read_text()) == r
    markdown = (out / "results.md").read_text()
    assert "| measure | agentmill | goal | met |" in markdown and "## Scaling" in markdown
    svg = (out / "timeline.svg").read_text()
    assert svg.startswith("<svg") and all(role in svg for role in r["context_tokens_by_role"])
    assert [s["roles"] for s in r["scaling"]] == [8]
    for row in r["scaling"]:
        assert set(row) >= {"roles", "agentmill_s", "critical_path_s", "overhead_ms_per_task"}
        assert row["peak_rss_mb"] > 50 and row["critical_path_s"] <= row["agentmill_s"]


def test_requests_commits_and_reruns_are_counted_from_the_fake(
    results: tuple[dict[str, Any], Path],
) -> None:
    r, _ = results
    assert r["roles"] == 8
    # A shared-prompt-prefix warm-up is a request too, when agents of a tier start together.
    assert r["model_requests"] == PER_AGENT * 8 + r["warmup_requests"]
    assert r["commits"] == 5  # one per phase
    assert r["cached_rerun_requests"] == 0 and r["cached_rerun_cached_agents"] == 8
    assert r["incremental_roles"] == r["incremental_expected_roles"]
    assert r["incremental_requests"] == r["incremental_expected_requests"]
    assert r["incremental_requests"] == PER_AGENT * len(r["incremental_expected_roles"]) > 0
    assert 0 < r["context_tokens_per_agent"] <= r["context_tokens_max"] < 100
    assert r["tokens"]["input"] > 0 and r["tokens"]["output"] > 0
    assert sum(r["peak_in_flight_by_tier"].values()) >= 1


def test_the_critical_path_bounds_every_schedule(results: tuple[dict[str, Any], Path]) -> None:
    r, _ = results
    cp = r["critical_path_s"]
    assert r["critical_path_spread_s"] == 0  # every schedule was served the same latencies
    # The same draw the fake made, computed from the latency model alone.
    expected_cp, _ = ideal_walls(generated_team(8), TierLatency(seed=r["seed"], scale=0.05))
    assert cp == pytest.approx(expected_cp, abs=1e-3)
    for wall in (r["agentmill_s"], r["level_barrier_s"], r["asyncio_dataflow_s"]):
        assert cp <= wall
    # Sequential cannot beat the sum of the latencies it was served, one after another.
    latency = TierLatency(seed=r["seed"], scale=0.05)
    serial = sum(agent_latencies(generated_team(8), latency).values())
    assert r["sequential_s"] >= serial > cp
    parts = r["wall_parts"]["agentmill"]
    assert parts["before_first_request_s"] > 0 and parts["after_last_reply_s"] > 0


def test_generated_teams_keep_the_default_shape() -> None:
    default = team_shape(default_team())
    for size in (10, 32, 40, 80):
        shape = team_shape(generated_team(size))
        assert shape["roles"] == size
        assert list(shape["roles_per_phase"]) == list(default["roles_per_phase"])
        tiers = shape["tiers"]
        assert abs(tiers["opus"] / size - 3 / 32) < 0.05
        assert abs(tiers["haiku"] / size - 18 / 32) < 0.05
        assert 1.3 <= shape["mean_fan_in"] <= 2.2
    assert team_shape(generated_team(32))["roles_per_phase"] == default["roles_per_phase"]
