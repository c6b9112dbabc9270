"""The benchmark harness at a tiny scale: its accounting, not its timings.

Runs `benchmarks.run` end to end (fake Messages API, the runs in a process of
their own) on two of its server configurations, the embedded server the
command line starts and a private `prefect server start` with every service
on, and asks for the PostgreSQL one on a machine made to look as if
PostgreSQL were not installed (tests/fleet runs that configuration on its
fleet's server), with an 8-role generated team, latencies scaled down 20x and no extra
scaling sizes; then checks what it counted: requests, cache hits, the
incremental set, the critical path as a lower bound, the Prefect API
requests per build, what each server recorded, the README's command run in
a fresh process. No assertion here depends on how fast the machine is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.bounds import agent_latencies, ideal_walls
from benchmarks.breakdown import in_the_way, split_wall
from benchmarks.latency import TierLatency
from benchmarks.run import SERVER_FIGURES, Options, run_benchmark
from benchmarks.teams import generated_team, team_shape
from blocks.team import default_team
from tasks.build.offline_script import REQUESTS_PER_AGENT as PER_AGENT
from tasks.testing import postgres

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
    "servers",
}
# The module's fixture runs the harness once: two servers, one of which migrates a fresh
# database, and the README's command in fresh processes; minutes on two busy cores.
pytestmark = pytest.mark.timeout(900)
# What results.json says of each server (issue 16), and more.
SERVER_KEYS = {
    "wall_over_critical",
    "overhead_ms_per_task",
    "cached_rerun_s",
    "http_503",
    "start_to_first_request_s",
    "start_to_summary_s",
    "floor_ms_per_task",
    "client_backoffs",
    "api_per_build_zero_latency",
    "spread",
    "targets",
}


def _measured(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in r["servers"].items() if not s.get("not_measured")}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("bench")
    options = Options(
        roles=8,
        scales=(),
        latency_scale=0.05,
        configs=("embedded", "default", "postgres"),
        headline="default",
        scale_configs=(),
        samples=1,
        fleet=False,  # tests/fleet covers the fleet; its benchmark runs in benchmarks.run only
        cli_samples=1,
        cli_fresh=False,  # a fresh embedded server migrates its database: slow, and timed by hand
        caching=False,  # tests/benchmarks/test_caching.py covers it, at a unit's cost
        verification=False,  # benchmarks.verification is its own module, run by hand
    )
    with pytest.MonkeyPatch.context() as patch:
        # Where PostgreSQL is not installed, its row says so and the rest still runs.
        patch.setattr(postgres, "PG_ROOT", out / "no-postgresql-here")
        return run_benchmark(out, options), out


def test_results_have_every_key_and_the_files(results: tuple[dict[str, Any], Path]) -> None:
    r, out = results
    assert set(r) >= REQUIRED_KEYS
    assert json.loads((out / "results.json").read_text()) == r
    markdown = (out / "results.md").read_text()
    assert "| measure | agentmill | goal | met |" in markdown and "## Scaling" in markdown
    assert "## The servers people run" in markdown
    assert "| **postgres**: `prefect server start` on PostgreSQL" in markdown
    assert "not measured: PostgreSQL is not installed: `apt-get install -y postgresql`" in markdown
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


def test_each_server_is_measured_and_records_what_a_ui_user_sees(
    results: tuple[dict[str, Any], Path],
) -> None:
    r, _ = results
    assert list(r["servers"]) == ["embedded", "default", "postgres"]
    unmeasured = r["servers"]["postgres"]
    assert unmeasured["not_measured"].startswith("PostgreSQL is not installed")
    assert {k: unmeasured[k] for k in SERVER_FIGURES} == dict.fromkeys(SERVER_FIGURES)
    for name, server in _measured(r).items():
        assert set(server) >= SERVER_KEYS, name
        assert server["cached_rerun_requests"] == 0
        assert server["targets"]["cached_rerun_requests"]["met"] is True
        assert isinstance(server["http_503"], int)  # read from the server's own log
        assert server["client_backoffs"]["runs"] > 0
        # The harness waited until the server had recorded each run's task runs and final
        # event: both servers keep what the Prefect UI shows.
        assert server["recorded_after_s"] is not None, name
        assert server["records_task_runs_and_events"] is True


def test_a_build_makes_its_prefect_requests_per_phase_not_per_agent(
    results: tuple[dict[str, Any], Path],
) -> None:
    r, _ = results
    phases = len(r["team_shape"]["roles_per_phase"])
    for name, server in _measured(r).items():
        api = server["api_per_build_zero_latency"]
        created = api["POST /flow_runs/"]["count"] - api["POST /flow_runs/"]["http_503"]
        assert created == phases + 1, name  # the build's flow run and one subflow per phase
        tracking = api["POST /task_runs/"]["count"] - api["POST /task_runs/"]["http_503"]
        assert tracking == phases, name  # the parent's task run standing for each subflow
        assert api.get("PATCH /artifacts/{id}", {"count": 0})["count"] < r["roles"], name
        split = server["zero_latency_breakdown"]
        assert split["agentmill"]["flow_runs"] == split["floor"]["flow_runs"] == phases + 1
        # The agent code alone is the headline's baseline, measured after embedded's runs.
        assert split["agent_code_alone_s"] == r["zero_latency"]["asyncio_dataflow_s"], name
        # Every run exists before the first agent starts; none is created while agents run.
        created = split["agentmill"]["creating"]["operations"]["POST /flow_runs/"]
        assert created["count"] >= phases + 1, name
        assert "POST /flow_runs/" not in split["agentmill"]["running"]["operations"], name
        windows = sum(split["agentmill"][w]["seconds"] for w in ("creating", "running", "closing"))
        assert windows == pytest.approx(server["zero_latency_wall_s"], abs=0.01), name
        # The creation window of the latency run and of the cached rerun, and what each goal
        # missed has in its way: an entry exactly where a goal's `met` is False.
        assert 0 < server["creating_s"] < server["agentmill_s"], name
        assert 0 < server["cached_rerun_creating_s"] < server["cached_rerun_s"], name
        for goal in (
            "wall_vs_critical_path",
            "overhead_ms_per_task",
            "cached_rerun_share_of_first",
        ):
            missed = server["targets"][goal]["met"] is False
            assert (goal in server["in_the_way"]) == missed, (name, goal)


def test_the_readme_command_is_timed_in_a_fresh_process(
    results: tuple[dict[str, Any], Path],
) -> None:
    r, _ = results
    for name, server in _measured(r).items():
        (run,) = server["cli_runs"]
        if run["exit_code"] != 0:  # e.g. Prefect's start-up timeout on a busy machine
            assert run["error"], name
            continue
        first, summary = run["start_to_first_request_s"], run["start_to_summary_s"]
        assert 0 < first <= summary <= run["process_s"], name
        assert server["start_to_first_request_s"] == first


def test_the_zero_latency_wall_splits_where_the_last_run_starts_and_the_build_ends() -> None:
    """A build and two subflows: created (with a 503 retried), run, closed."""
    create, state, patch = "POST /flow_runs/", "POST /flow_runs/{id}/set_state", "PATCH /x"
    timeline = [
        [0.00, 0.05, create, 201],  # the build
        [0.05, 0.02, state, 201],  # build running
        [0.07, 0.04, create, 503],  # a retried creation is not a run
        [2.10, 0.05, create, 201],
        [2.15, 0.02, state, 201],
        [2.17, 0.05, create, 201],
        [2.22, 0.03, state, 201],  # the last run is running: creating ends at 2.25
        [2.50, 0.01, patch, 200],
        [2.60, 0.02, state, 201],
        [2.70, 0.02, state, 201],
        [2.80, 0.05, state, 201],  # the build's final state: closing starts
    ]
    split = split_wall({"api_timeline": timeline, "wall_s": 3.0})
    assert split is not None and split["flow_runs"] == 3
    assert split["creating"]["seconds"] == pytest.approx(2.25)
    assert split["creating"]["requests"] == 7
    assert (split["creating"]["http_503"], split["running"]["http_503"]) == (1, 0)
    assert split["creating"]["operations"][create]["count"] == 4
    assert split["running"]["seconds"] == pytest.approx(0.55)
    assert split["running"]["operations"][state]["count"] == 2
    assert split["closing"]["seconds"] == pytest.approx(0.2)
    assert split_wall({"api_timeline": timeline[:3], "wall_s": 1.0}) is None  # never ran


def test_each_missed_goal_names_what_stands_in_its_way_and_the_figure_without_it() -> None:
    """A server's row that misses three goals: the creation windows and the floor, priced."""
    row: dict[str, Any] = {
        "roles": 32,
        "agentmill_s": 10.0,
        "critical_path_s": 8.0,
        "creating_s": 1.0,
        "wall_over_critical": 1.25,
        "scaling": [  # the worst ratio is at 40 roles: its own creation window is priced
            {"roles": 40, "agentmill_s": 13.0, "critical_path_s": 10.0, "creating_s": 1.5,
             "creating_503": 1, "wall_over_critical": 1.3},
            {"roles": 20, "agentmill_s": 7.0, "critical_path_s": 6.0, "creating_s": 0.9,
             "wall_over_critical": 1.167},
        ],
        "overhead_ms_per_task": 100.0,
        "floor_ms_per_task": 50.0,
        "zero_latency_breakdown": {
            "agents": 32,
            "floor": {"flow_runs": 6, "creating": {"seconds": 0.96}},
            "agent_code_alone_s": 0.96,
        },
        "cached_rerun_s": 1.5,
        "cached_rerun_creating_s": 1.0,
        "targets": {
            "wall_vs_critical_path": {"met": False},
            "overhead_ms_per_task": {"met": False},
            "cached_rerun_share_of_first": {"met": False},
        },
    }  # fmt: skip
    way = in_the_way(row)
    wall = way["wall_vs_critical_path"]
    assert (wall["cost"], wall["without"]) == (0.15, 1.15)
    assert "1.50 s at 40 roles, 1 of its requests answered 503" in wall["what"]
    per_agent = way["overhead_ms_per_task"]
    assert (per_agent["cost"], per_agent["without"]) == (50.0, 50.0)
    assert "30.0 of it creating the runs" in per_agent["what"]
    assert "adds 30.0 ms" in per_agent["what"] and "agentmill 20.0 ms" in per_agent["what"]
    cached = way["cached_rerun_share_of_first"]
    assert (cached["cost"], cached["without"]) == (0.1, 0.05)
    assert "503" not in cached["what"]  # none was answered 503 in the cached rerun's creation
    row["targets"] = {key: {"met": True} for key in row["targets"]}
    assert in_the_way(row) == {}  # nothing stands in the way of a goal that is met


def test_a_fleet_run_that_never_ends_is_reported_as_such_not_as_a_wall() -> None:
    """The committed fleet figures, with SQLite's eight runs not final when the harness
    stopped waiting (a build hung: seen in a benchmark run)."""
    from benchmarks.fleet import WALL_TIMEOUT_S, fleet_markdown

    fleet = json.loads((Path(__file__).parents[2] / "benchmarks" / "results.json").read_text())
    fleet = fleet["fleet"]
    fleet["detail"]["sqlite"].update(wall_8_s=None, ratio=None, timed_out=True)
    text = "\n".join(fleet_markdown(fleet))
    row = next(line for line in text.splitlines() if line.startswith("| SQLite |"))
    assert f"| not final in {WALL_TIMEOUT_S:.0f} s | n/a |" in row and "None" not in row
    assert "On SQLite, not every run of 8 was final" in text
