"""`python -m benchmarks.run`: agentmill on the Prefect servers people run, against its baselines.

One command, one harness process: it starts the fake Messages API (seeded
tier latencies), then, for each server configuration (benchmarks.servers:
the embedded server the command line starts, a plain `prefect server
start` on SQLite and on PostgreSQL, the tuned one), one process per group
of runs (so each team size's peak RSS is its own), and the README's first
command in fresh processes; it writes `benchmarks/results.md`, `results.json` and `timeline.svg`.
Everything counted (requests, tokens, the critical path) comes from what the
fake served, not from what the runs say about themselves; the noisy figures
are medians of several runs, reported with their spread.

    python -m benchmarks.run                     # the full benchmark, about 15 minutes
    python -m benchmarks.run --roles 8 --scales '' --samples 2 --latency-scale 0.05 --out /tmp/b
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.baselines import dependency_levels
from benchmarks.bounds import ideal_walls, level_barrier_headroom
from benchmarks.breakdown import creating, in_the_way, zero_latency_breakdown
from benchmarks.caching import caching_markdown
from benchmarks.caching import measure as measure_caching
from benchmarks.cli import run_cli
from benchmarks.fake_api import BenchMessagesAPI
from benchmarks.fleet import fleet_markdown
from benchmarks.latency import TierLatency
from benchmarks.machine import describe_machine, load_average, now_iso
from benchmarks.report import render_markdown, render_timeline_svg
from benchmarks.servers import CONFIGS, ServerConfig, ServerHandle, serve
from benchmarks.stats import median, spread
from benchmarks.teams import team_of_size, team_shape
from tasks.agents.loop import pointer_tokens
from tasks.build.offline_script import REQUESTS_PER_AGENT
from tasks.build.planning import Plan, plan_phases
from tasks.build.report import critical_path
from tasks.testing.prefect_server import quiet_env

ROOT = Path(__file__).resolve().parents[1]

# The project's goals (issues 3 and 16); reported, never enforced.
TARGETS = {
    "wall_vs_critical_path": 1.10,  # at the tier latencies, 32 roles and at 20, 40 and 80
    "faster_than_level_barriers": 0.15,
    "overhead_ms_per_task": 60.0,  # zero latency, on the embedded and the default server
    "cached_rerun_requests": 0,
    "cached_rerun_share_of_first": 0.10,
    "cached_rerun_s": 2.0,  # in the flow
    "peak_rss_mb_at_40_roles": 300.0,
    "cli_start_to_summary_s": 20.0,  # the README's first command, its Prefect database exists
    "cli_start_to_summary_fresh_db_s": 60.0,  # ... on a fresh PREFECT_HOME
}
# At most these fractions of the goals: `met` when value <= goal (>= for these).
_AT_LEAST = {"faster_than_level_barriers"}


@dataclass
class Options:
    """What `python -m benchmarks.run` measures; the defaults are the committed run's."""

    roles: int = 32  # the main team: 32 is the default team, other sizes are generated
    scales: tuple[int, ...] = (20, 40, 80)
    seed: int = 7
    latency_scale: float = 1.0
    configs: tuple[str, ...] = ("embedded", "default", "postgres", "tuned")  # benchmarks.servers
    headline: str = "default"  # whose runs also hold the baselines and the detail tables
    scale_configs: tuple[str, ...] = ("embedded", "default")  # which run the scaling sizes
    # Existing Prefect APIs standing in for configurations' own servers, by name (the
    # embedded one never takes one): `--api-url` for the default, the fleet tests' server
    # for postgres.
    api_urls: dict[str, str] = field(default_factory=dict)
    samples: int = 5  # repeats of the noisy runs of the main team; medians are reported
    scale_samples: int = 3  # repeats at each scaling size
    cli_samples: int = 3  # runs of the README's first command per server (and 1 on a fresh home)
    cli_fresh: bool = True  # also time the command on a fresh PREFECT_HOME (embedded only)
    keep_scratch: bool = False
    fleet: bool = True  # eight builds on two workers, PostgreSQL and SQLite (benchmarks/fleet.py)
    caching: bool = True  # also measure prompt caching (benchmarks.caching), ~2 minutes
    verification: bool = True  # also measure verification (benchmarks.verification), ~1 minute

    def __post_init__(self) -> None:
        unknown = [c for c in (*self.configs, self.headline, *self.api_urls) if c not in CONFIGS]
        if unknown:
            names, known = ", ".join(unknown), ", ".join(CONFIGS)
            raise ValueError(f"unknown server configuration(s) {names}; known: {known}")
        if self.headline not in self.configs:
            raise ValueError(f"the headline configuration {self.headline!r} is not in configs")


@dataclass
class Bench:
    """One benchmark run's shared pieces: the fake, the Prefect API, a scratch dir."""

    api: BenchMessagesAPI
    scratch: Path
    options: Options
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)  # "caching", "verification"

    def run_group(
        self, group: str, roles: int, runs: list[dict[str, Any]], server: ServerHandle
    ) -> dict[str, Any]:
        """Run `runs` in one fresh process against `server`; returns its results joined with
        the fake's counts."""
        home = self.scratch / group
        home.mkdir(parents=True)
        for run in runs:
            name = run["name"]
            run.setdefault("tag", f"{group}.{name}")
            run.setdefault("idea", f"A todo app with React and FastAPI [bench {group}/{name}]")
            run.setdefault("workdir", str(home / "work" / name))
            run.setdefault("storage", str(home / "storage" / name))
            scale = 0.0 if run.get("zero") else self.options.latency_scale
            latency = TierLatency(seed=self.options.seed, scale=scale)
            run["base_url"] = self.api.register(run["tag"], latency)
        spec = {
            "roles": roles,
            "seed": self.options.seed,
            "runs": runs,
            "records": server.config.records,
        }
        spec_path, out_path = home / "spec.json", home / "out.json"
        spec_path.write_text(json.dumps(spec, indent=2))
        env = {
            **os.environ,
            **quiet_env(),
            "PREFECT_HOME": str(home / "prefect-home"),
            "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(home / "storage" / "default"),
            **server.env,
        }
        if "PREFECT_API_URL" not in server.env:
            env.pop("PREFECT_API_URL", None)  # embedded: Prefect starts the process's own server
        log = home / "process.log"
        server.logs.append(log)
        started = time.perf_counter()
        with log.open("wb") as out:
            proc = subprocess.run(
                [sys.executable, "-m", "benchmarks.scenarios", str(spec_path), str(out_path)],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=1800,
                check=False,
            )
        if proc.returncode != 0:
            raise RuntimeError(
                f"benchmark group {group} failed (exit {proc.returncode}):\n"
                + log.read_text()[-4000:]
            )
        result: dict[str, Any] = json.loads(out_path.read_text())
        result["process_s"] = round(time.perf_counter() - started, 2)
        samples: dict[str, list[dict[str, Any]]] = {}
        for run in runs:
            measured = result["runs"][run["name"]]
            measured["fake"] = self.api.stats(run["tag"]).as_dict()
            measured["tag"] = run["tag"]
            if "sample_of" in run:
                samples.setdefault(run["sample_of"], []).append(measured)
        for name, picked in samples.items():  # the median sample stands for the kind
            ordered = sorted(picked, key=lambda m: m["wall_s"])
            median = ordered[(len(ordered) - 1) // 2]
            result["runs"][name] = {
                **median,
                "samples_s": [m["wall_s"] for m in picked],
                "samples": [_sample_figures(m) for m in picked],
            }
        self.groups[group] = result
        return result

    def served_critical_path(self, tag: str, plan: Plan) -> tuple[float, list[str]]:
        """The longest path through the DAG of the latencies the fake served to this run."""
        durations = self.api.stats(tag).latency_by_role
        deps = {r: plan.role_deps(r) for r in plan.order}
        return critical_path(durations, deps, plan.order)

    def wall_parts(self, run: dict[str, Any], cp: float) -> dict[str, float]:
        """Split a run's wall time: before its first model request, beyond the critical
        path while requests flow (scheduling, tasks, tool calls, the SDK), after its
        last reply (the last agent's end, the last commit, the flow's end)."""
        stats = self.api.stats(run["tag"])
        if stats.first_request_at is None or stats.last_reply_at is None:
            return {}
        return {
            "before_first_request_s": round(stats.first_request_at - run["began_monotonic"], 3),
            "beyond_critical_path_s": round(stats.last_reply_at - stats.first_request_at - cp, 3),
            "after_last_reply_s": round(run["ended_monotonic"] - stats.last_reply_at, 3),
        }


def mid_graph_role(plan: Plan) -> str:
    """A role halfway down the graph, with the most descendants among its level."""
    levels = dependency_levels(plan)
    middle = levels[(len(levels) - 1) // 2]
    return max(middle, key=lambda r: (len(plan.descendants(r)), -plan.order.index(r)))


def _samples(name: str, count: int, **spec: Any) -> list[dict[str, Any]]:
    """`count` runs of one kind; the report uses their median (and lists them all)."""
    return [{"name": f"{name}.{i}", "sample_of": name, **spec} for i in range(1, count + 1)]


def main_runs(
    plan: Plan, scratch: Path, group: str, samples: int = 5, headline: bool = True
) -> list[dict[str, Any]]:
    """The main team's runs on one server, in order; the reruns share the first run's workdir
    and cache. The headline server also runs the baselines and the detail runs."""
    rerun = {
        "idea": f"A todo app with React and FastAPI [bench {group}/rerun]",
        "workdir": str(scratch / group / "work" / "rerun"),
        "storage": str(scratch / group / "storage" / "rerun"),
    }
    zero: dict[str, Any] = {"zero": True}
    baselines: list[dict[str, Any]] = [
        {"name": "sequential", "kind": "baseline", "schedule": "sequential"},
        {"name": "level_barriers", "kind": "baseline", "schedule": "level_barriers"},
        {"name": "asyncio_dataflow", "kind": "baseline", "schedule": "asyncio_dataflow"},
        {"name": "zero_asyncio", "kind": "baseline", "schedule": "asyncio_dataflow", **zero},
    ]
    runs: list[dict[str, Any]] = [
        *_samples("agentmill", max(1, samples - 1), kind="agentmill"),
        *_samples("zero_agentmill", samples, kind="agentmill", **zero),
        *_samples("zero_floor", samples, kind="floor", **zero),
        # One more cold sample of agentmill, and the first run of the reruns.
        {"name": "rerun_first", "sample_of": "agentmill", "kind": "agentmill", **rerun},
        *_samples("rerun_cached", samples, kind="agentmill", **rerun),
    ]
    if not headline:
        return runs
    detail: list[dict[str, Any]] = [
        *_samples("zero_agentmill_sync", samples, kind="agentmill", sync=True, **zero),
        {"name": "empty_flows", "kind": "empty_flows"},
        {"name": "rerun_incremental", "kind": "agentmill", "change_role": mid_graph_role(plan)}
        | rerun,
    ]
    return [*baselines, *runs, *detail]


def scaling_runs(samples: int = 3, headline: bool = True) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = [
        *_samples("agentmill", samples, kind="agentmill"),
        *_samples("zero_agentmill", samples, kind="agentmill", zero=True),
        *_samples("zero_floor", samples, kind="floor", zero=True),
    ]
    if headline:
        runs.insert(0, {"name": "level_barriers", "kind": "baseline", "schedule": "level_barriers"})
    return runs


def _sample_figures(run: dict[str, Any]) -> dict[str, Any]:
    """What the report keeps of each sample besides the median: its wall and its API costs."""
    return {
        k: run[k]
        for k in ("wall_s", "client_backoffs", "api_requests", "recorded_after_s")
        if k in run
    }


def _series(runs: dict[str, Any], name: str, key: str = "wall_s") -> list[float]:
    run = runs[name]
    return [m[key] for m in run.get("samples", [run]) if m.get(key) is not None]


def summarise_group(bench: Bench, group: str, roles: int) -> dict[str, Any]:
    """The figures of one team size on one server, from its process and the fake's counts."""
    result = bench.groups[group]
    runs = result["runs"]
    team = team_of_size(roles, bench.options.seed)
    plan = plan_phases(team)
    n = len(plan.order)
    cp, cp_roles = bench.served_critical_path(runs["agentmill"]["tag"], plan)
    agentmill = runs["agentmill"]["wall_s"]
    level = runs.get("level_barriers", {}).get("wall_s")
    walls = _series(runs, "agentmill")
    zero = _series(runs, "zero_agentmill")
    return {
        "roles": n,
        "shape": team_shape(team),
        "agentmill_s": agentmill,
        "agentmill_samples_s": walls,
        "agentmill_build_s": runs["agentmill"]["build_wall_s"],
        "agentmill_wall_parts": bench.wall_parts(runs["agentmill"], cp),
        "critical_path_s": round(cp, 4),
        "critical_path": cp_roles,
        **creating(runs["agentmill"]),
        "ratio_to_critical_path": round(agentmill / cp, 3) if cp else None,
        "ratio_samples": [round(w / cp, 3) for w in walls] if cp else [],
        "level_barrier_s": level,
        "faster_than_level_barriers": None if level is None else round(1 - agentmill / level, 3),
        "level_barrier_headroom": level_barrier_headroom(team, bench.options.seed),
        "overhead_ms_per_task": round(1000 * runs["zero_agentmill"]["wall_s"] / n, 1),
        "overhead_ms_samples": [round(1000 * w / n, 1) for w in zero],
        "floor_ms_per_task": round(1000 * runs["zero_floor"]["wall_s"] / n, 1),
        "requests": runs["agentmill"]["fake"]["requests"],
        "peak_in_flight_by_tier": runs["agentmill"]["fake"]["peak_in_flight_by_tier"],
        "peak_rss_mb": result["peak_rss_mb"],
        "process_s": result["process_s"],
    }


_SCALING_KEYS = (
    "roles",
    "agentmill_s",
    "critical_path_s",
    "ratio_to_critical_path",
    "level_barrier_s",
    "faster_than_level_barriers",
    "overhead_ms_per_task",
    "floor_ms_per_task",
    "peak_rss_mb",
)


def _backoffs(runs: dict[str, Any]) -> dict[str, Any]:
    """The client's back-offs over every Prefect run of a group (samples included)."""
    seen = [
        m["client_backoffs"]
        for run in runs.values()
        for m in run.get("samples", [run])
        if "client_backoffs" in m
    ]
    return {
        "count": sum(b["count"] for b in seen),
        "seconds": round(sum(b["seconds"] for b in seen), 2),
        "http_503": sum(b["http_503"] for b in seen),
        "max_attempt": max((b["max_attempt"] for b in seen), default=0),
        "runs": len(seen),
        "runs_with_backoffs": sum(1 for b in seen if b["count"]),
    }


def summarise_server(
    bench: Bench, name: str, info: dict[str, Any], cli: dict[str, Any]
) -> dict[str, Any]:
    """One server configuration's row: the issue's figures, their spread, what they cost."""
    opts = bench.options
    main = summarise_group(bench, f"{name}-main", opts.roles)
    runs = bench.groups[f"{name}-main"]["runs"]
    n = main["roles"]
    cached = [m for k, m in runs.items() if k.startswith("rerun_cached.")]
    first = main["agentmill_s"]
    cached_s = runs["rerun_cached"]["wall_s"]
    scaling = [
        summarise_group(bench, f"{name}-scale-{size}", size)
        for size in opts.scales
        if f"{name}-scale-{size}" in bench.groups
    ]
    recorded = [
        m["recorded_after_s"]
        for run in runs.values()
        for m in run.get("samples", [run])
        if m.get("recorded_after_s") is not None
    ]
    groups = [g for g in bench.groups if g.startswith(f"{name}-")]
    every = {f"{g}/{k}": r for g in groups for k, r in bench.groups[g]["runs"].items()}
    backoffs = _backoffs(every)
    zero = runs["zero_agentmill"]
    existing, fresh = cli.get("existing_db", []), cli.get("fresh_db", [])
    row: dict[str, Any] = {
        **info,
        "roles": n,
        "wall_over_critical": main["ratio_to_critical_path"],
        "wall_over_critical_samples": main["ratio_samples"],
        "agentmill_s": main["agentmill_s"],
        "critical_path_s": main["critical_path_s"],
        "creating_s": main["creating_s"],
        "creating_503": main["creating_503"],
        "wall_parts": main["agentmill_wall_parts"],
        "overhead_ms_per_task": main["overhead_ms_per_task"],
        "overhead_ms_samples": main["overhead_ms_samples"],
        "floor_ms_per_task": main["floor_ms_per_task"],
        "cached_rerun_s": cached_s,
        "cached_rerun_samples_s": runs["rerun_cached"]["samples_s"],
        "cached_rerun_share_of_first": round(cached_s / first, 3),
        "cached_rerun_in_flow_s": runs["rerun_cached"]["build_wall_s"],
        **creating(runs["rerun_cached"], "cached_rerun_creating"),
        "cached_rerun_requests": sum(m["fake"]["requests"] for m in cached),
        "http_503": info.get("retryable_errors"),
        "client_backoffs": backoffs,
        "api_per_build_zero_latency": zero.get("api", {}),
        "api_requests_per_build": zero.get("api_requests"),
        "zero_latency_wall_s": zero["wall_s"],
        "recorded_after_s": median(recorded) if recorded else None,
        "start_to_first_request_s": _cli_median(existing, "start_to_first_request_s"),
        "start_to_summary_s": _cli_median(existing, "start_to_summary_s"),
        "cli_runs": existing,
        "scaling": [
            {
                "roles": s["roles"],
                "agentmill_s": s["agentmill_s"],
                "critical_path_s": s["critical_path_s"],
                "creating_s": s["creating_s"],
                "creating_503": s["creating_503"],
                "wall_over_critical": s["ratio_to_critical_path"],
                "wall_over_critical_samples": s["ratio_samples"],
                "overhead_ms_per_task": s["overhead_ms_per_task"],
                "floor_ms_per_task": s["floor_ms_per_task"],
            }
            for s in scaling
        ],
        "spread": {
            "wall_over_critical": spread(main["ratio_samples"]),
            "overhead_ms_per_task": spread(main["overhead_ms_samples"]),
            "cached_rerun_s": spread(runs["rerun_cached"]["samples_s"]),
        },
    }
    if fresh:
        row["start_to_first_request_fresh_db_s"] = _cli_median(fresh, "start_to_first_request_s")
        row["start_to_summary_fresh_db_s"] = _cli_median(fresh, "start_to_summary_s")
        row["cli_runs_fresh_db"] = fresh
    row["targets"] = _server_targets(row)
    return row


def price_obstacles(bench: Bench, name: str, row: dict[str, Any]) -> None:
    """Where the row's zero-latency seconds go, and what stands in the way of each goal missed.

    Run once every server has run: the agent code alone is a baseline of the
    headline server's groups, which a server measured before it does not have yet.
    """
    runs = bench.groups[f"{name}-main"]["runs"]
    headline = bench.groups.get(f"{bench.options.headline}-main", {}).get("runs", {})
    alone = headline.get("zero_asyncio")
    row["zero_latency_breakdown"] = zero_latency_breakdown(
        runs["zero_agentmill"], runs["zero_floor"], row["roles"], alone["wall_s"] if alone else None
    )
    row["in_the_way"] = in_the_way(row)


def _cli_median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return median(values) if values else None


def _met(key: str, value: float | int | None) -> dict[str, Any]:
    goal = TARGETS[key]
    met = None if value is None else (value >= goal if key in _AT_LEAST else value <= goal)
    return {"value": value, "target": goal, "met": met}


def _server_targets(row: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Issue 16's goals on one server: each measured value, its goal, and whether it was met."""
    ratios = [row["wall_over_critical"]] + [s["wall_over_critical"] for s in row["scaling"]]
    targets = {
        "wall_vs_critical_path": _met("wall_vs_critical_path", max(ratios)),
        "overhead_ms_per_task": _met("overhead_ms_per_task", row["overhead_ms_per_task"]),
        "cached_rerun_share_of_first": _met(
            "cached_rerun_share_of_first", row["cached_rerun_share_of_first"]
        ),
        "cached_rerun_s": _met("cached_rerun_s", row["cached_rerun_in_flow_s"]),
        "cached_rerun_requests": _met("cached_rerun_requests", row["cached_rerun_requests"]),
        "cli_start_to_summary_s": _met("cli_start_to_summary_s", row["start_to_summary_s"]),
    }
    if "start_to_summary_fresh_db_s" in row:
        targets["cli_start_to_summary_fresh_db_s"] = _met(
            "cli_start_to_summary_fresh_db_s", row["start_to_summary_fresh_db_s"]
        )
    return targets


def summarise(bench: Bench, servers: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """results.json: the headline server's detail at the top level, every server in `servers`."""
    opts = bench.options
    team = team_of_size(opts.roles, opts.seed)
    plan = plan_phases(team)
    n = len(plan.order)
    head_group = f"{opts.headline}-main"
    main = bench.groups[head_group]["runs"]
    head = summarise_group(bench, head_group, opts.roles)
    cp = head["critical_path_s"]
    fake = {name: run["fake"] for name, run in main.items()}
    seq, level = main["sequential"]["wall_s"], main["level_barriers"]["wall_s"]
    agentmill = main["agentmill"]["wall_s"]
    # The three schedules must have been served the same latencies: same seed, same draws.
    cps = [
        bench.served_critical_path(main[name]["tag"], plan)[0]
        for name in ("sequential", "level_barriers", "asyncio_dataflow", "agentmill")
    ]
    changed = main["rerun_incremental"]["change_role"]
    expected_roles = sorted({changed} | plan.descendants(changed))
    tokens = {r: pointer_tokens(plan.roles[r]) for r in plan.order}
    first_wall = agentmill  # the median of the cold runs, the reruns' first among them
    cached = [run for name, run in main.items() if name.startswith("rerun_cached.")]
    scaling = [head] + [
        summarise_group(bench, f"{opts.headline}-scale-{s}", s)
        for s in opts.scales
        if f"{opts.headline}-scale-{s}" in bench.groups
    ]
    scaling.sort(key=lambda s: s["roles"])
    rss_40 = next((s["peak_rss_mb"] for s in scaling if s["roles"] == 40), None)
    _, ideal_levels = ideal_walls(team, TierLatency(seed=opts.seed))
    z = {name: main[name] for name in ("zero_agentmill", "zero_agentmill_sync", "zero_floor")}
    results: dict[str, Any] = {
        "date": now_iso(),
        "machine": describe_machine(),
        "seed": opts.seed,
        "latency_scale": opts.latency_scale,
        "samples": opts.samples,
        "headline_server": opts.headline,
        "roles": n,
        "team_shape": head["shape"],
        "sequential_s": seq,
        "level_barrier_s": level,
        "asyncio_dataflow_s": main["asyncio_dataflow"]["wall_s"],
        "agentmill_s": agentmill,
        "agentmill_build_s": main["agentmill"]["build_wall_s"],
        "agentmill_samples_s": main["agentmill"]["samples_s"],
        "critical_path_s": cp,
        "critical_path": head["critical_path"],
        "critical_path_spread_s": round(max(cps) - min(cps), 6),
        "ideal_level_barrier_s": round(ideal_levels * opts.latency_scale, 4),
        "level_barrier_headroom": head["level_barrier_headroom"],
        "speedup_vs_sequential": round(seq / agentmill, 2),
        "speedup_vs_level_barrier": round(level / agentmill, 3),
        "faster_than_level_barriers": head["faster_than_level_barriers"],
        "ratio_to_critical_path": head["ratio_to_critical_path"],
        "asyncio_dataflow_ratio_to_critical_path": round(
            main["asyncio_dataflow"]["wall_s"] / cp, 3
        ),
        "wall_parts": {
            name: bench.wall_parts(main[name], cp)
            for name in ("agentmill", "asyncio_dataflow", "level_barriers", "sequential")
        },
        "overhead_ms_per_task": head["overhead_ms_per_task"],
        "zero_latency": {
            "agentmill_s": z["zero_agentmill"]["wall_s"],
            "agentmill_samples_s": z["zero_agentmill"]["samples_s"],
            "agentmill_build_s": z["zero_agentmill"]["build_wall_s"],
            "agentmill_sync_flow_s": z["zero_agentmill_sync"]["wall_s"],
            "agentmill_sync_flow_samples_s": z["zero_agentmill_sync"]["samples_s"],
            "sync_flow_ms_per_task": round(1000 * z["zero_agentmill_sync"]["wall_s"] / n, 1),
            "prefect_floor_s": z["zero_floor"]["wall_s"],
            "prefect_floor_samples_s": z["zero_floor"]["samples_s"],
            "floor_ms_per_task": head["floor_ms_per_task"],
            "asyncio_dataflow_s": main["zero_asyncio"]["wall_s"],
            "asyncio_ms_per_task": round(1000 * main["zero_asyncio"]["wall_s"] / n, 1),
            "empty_sync_flow_s": main["empty_flows"]["empty_sync_flow_s"],
            "empty_async_flow_s": main["empty_flows"]["empty_async_flow_s"],
        },
        "cached_rerun_s": main["rerun_cached"]["wall_s"],
        "cached_rerun_samples_s": main["rerun_cached"]["samples_s"],
        "cached_rerun_in_flow_s": main["rerun_cached"]["build_wall_s"],
        "cached_rerun_requests": sum(m["fake"]["requests"] for m in cached),
        "cached_rerun_cached_agents": min(m["cached_agents"] for m in cached),
        "cached_rerun_first_run_s": first_wall,
        "cached_rerun_share_of_first": round(main["rerun_cached"]["wall_s"] / first_wall, 3),
        "incremental_changed_role": changed,
        "incremental_rerun_s": main["rerun_incremental"]["wall_s"],
        "incremental_requests": fake["rerun_incremental"]["requests"],
        "incremental_roles": sorted(fake["rerun_incremental"]["requests_by_role"]),
        "incremental_expected_roles": expected_roles,
        "incremental_expected_requests": REQUESTS_PER_AGENT * len(expected_roles),
        "commits": main["agentmill"]["commits"],
        "model_requests": fake["agentmill"]["requests"],
        "warmup_requests": fake["agentmill"]["warmup_requests"],  # of model_requests
        "tokens": {
            "input": fake["agentmill"]["input_tokens"],
            "output": fake["agentmill"]["output_tokens"],
        },
        "peak_in_flight_by_tier": fake["agentmill"]["peak_in_flight_by_tier"],
        "context_tokens_per_agent": round(sum(tokens.values()) / n, 1),
        "context_tokens_max": max(tokens.values()),
        "context_tokens_by_role": tokens,
        "peak_rss_mb": bench.groups[head_group]["peak_rss_mb"],
        "peak_rss_mb_at_40_roles": rss_40,
        "startup_excluded": {
            "prefect_server_start_s": servers[opts.headline].get("start_s"),
            "process_import_s": bench.groups[head_group]["import_s"],
            "first_flow_call_s": bench.groups[head_group]["warm_up_s"],
        },
        "prefect_server": {k: v for k, v in servers[opts.headline].items() if k in _INFO_KEYS},
        "scaling": [{k: s[k] for k in _SCALING_KEYS} for s in scaling],
        "scaling_detail": scaling,
        "servers": servers,
    }
    for extra in ("caching", "verification"):  # measured once, on one server: see _extras
        if extra in bench.extras:
            results[extra] = bench.extras[extra]
    results["targets"] = _targets(results)
    return results


# What results.json says of every configuration (issue 16), measured or not.
SERVER_FIGURES = (
    "wall_over_critical",
    "overhead_ms_per_task",
    "cached_rerun_s",
    "http_503",
    "start_to_first_request_s",
)
_INFO_KEYS = (
    "label",
    "services_on",
    "records_task_runs_and_events",
    "external",
    "start_s",
    "peak_rss_mb",
    "retryable_errors",
)


def _targets(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The headline server's goals: each measured value, the goal, and whether it was met."""
    values = {
        "wall_vs_critical_path": r["ratio_to_critical_path"],
        "faster_than_level_barriers": r["faster_than_level_barriers"],
        "overhead_ms_per_task": r["overhead_ms_per_task"],
        "cached_rerun_requests": r["cached_rerun_requests"],
        "cached_rerun_share_of_first": r["cached_rerun_share_of_first"],
        "cached_rerun_s": r["cached_rerun_in_flow_s"],
        "peak_rss_mb_at_40_roles": r["peak_rss_mb_at_40_roles"],
    }
    return {key: _met(key, value) for key, value in values.items()}


def run_benchmark(out: Path, options: Options) -> dict[str, Any]:
    """Run everything and write the results into `out`; returns results.json's content."""
    scratch = Path(tempfile.mkdtemp(prefix="agentmill-bench-"))
    started = time.perf_counter()
    load_at_start = load_average()
    try:
        with BenchMessagesAPI() as api:
            bench = Bench(api, scratch, options)
            servers = {name: measure_server(bench, name) for name in options.configs}
        for name, row in servers.items():
            if not row.get("not_measured"):
                price_obstacles(bench, name, row)
        results = summarise(bench, servers)
        if options.fleet:
            results["fleet"] = measure_fleet(scratch, options.latency_scale)
        results["machine"]["load_average_1m_at_start"] = load_at_start
        results["benchmark_s"] = round(time.perf_counter() - started, 1)
        _write(out, results, bench)
        return results
    finally:
        if not options.keep_scratch:
            shutil.rmtree(scratch, ignore_errors=True)


def measure_server(bench: Bench, name: str) -> dict[str, Any]:
    """Every group of one server configuration, then the README's first command against it."""
    opts = bench.options
    config = CONFIGS[name]
    headline = name == opts.headline
    plan = plan_phases(team_of_size(opts.roles, opts.seed))
    api_url = opts.api_urls.get(name)
    missing = None if api_url else config.missing()
    if missing is not None:  # the benchmark may run where PostgreSQL is not installed
        if headline:
            raise ValueError(f"the headline configuration {name!r} cannot run here: {missing}")
        return unmeasured_server(config, missing)
    with serve(config, bench.scratch / f"{name}-server", api_url) as server:
        group = f"{name}-main"
        runs = main_runs(plan, bench.scratch, group, opts.samples, headline)
        bench.run_group(group, opts.roles, runs, server)
        if name in opts.scale_configs or headline:
            for size in opts.scales:
                runs = scaling_runs(opts.scale_samples, headline)
                bench.run_group(f"{name}-scale-{size}", size, runs, server)
        cli = _cli_runs(bench, name, server)
        if name == _extras_config(opts):
            _extras(bench, server)
        info = server.info()
    return summarise_server(bench, name, info, cli)


def unmeasured_server(config: ServerConfig, why: str) -> dict[str, Any]:
    """The row of a configuration this machine cannot run: the same keys, no figures."""
    row: dict[str, Any] = {
        "label": config.label,
        "not_measured": why,
        "records_task_runs_and_events": config.records,
        **dict.fromkeys(SERVER_FIGURES),
        "scaling": [],
        "spread": {},
        "targets": {},
    }
    return row


def _cli_runs(bench: Bench, name: str, server: ServerHandle) -> dict[str, list[dict[str, Any]]]:
    """The README's first command, timed: on the server's database as it is (it exists, the
    groups above used it) and, for the embedded server, on a fresh PREFECT_HOME."""
    root = bench.scratch / f"{name}-cli"
    home = {"PREFECT_HOME": str(root / "home")} if not server.config.embedded else {}
    out: dict[str, list[dict[str, Any]]] = {"existing_db": []}
    for i in range(bench.options.cli_samples):
        env = {**server.env, **home}
        out["existing_db"].append(run_cli(bench.api, f"{name}-cli-{i}", env, root / f"work-{i}"))
    if server.config.embedded and bench.options.cli_fresh and bench.options.cli_samples:
        env = {**server.env, "PREFECT_HOME": str(root / "fresh-home")}
        out["fresh_db"] = [run_cli(bench.api, f"{name}-cli-fresh", env, root / "work-fresh")]
    return out


def _extras_config(opts: Options) -> str | None:
    """Where verification and prompt caching are measured: the tuned server, as before this
    benchmark measured the others, else the default one; never the embedded (no API URL)."""
    for name in ("tuned", "default"):
        if name in opts.configs:
            return name
    return None


def _extras(bench: Bench, server: ServerHandle) -> None:
    """benchmarks.verification and benchmarks.caching against `server`."""
    if bench.options.caching:
        api_url = server.env["PREFECT_API_URL"]
        bench.extras["caching"] = measure_caching(
            api_url, bench.scratch / "caching", bench.options.seed
        )
    if bench.options.verification and server.server is not None:  # not an external API's home
        api_url = server.env["PREFECT_API_URL"]
        bench.extras["verification"] = measure_verification(api_url, server.server.home)


def measure_verification(api_url: str, home: Path) -> dict[str, Any]:
    """benchmarks/verification.py in its own process (Prefect reads its settings at import)."""
    env = {**os.environ, **quiet_env(), "PREFECT_API_URL": api_url, "PREFECT_HOME": str(home)}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.verification", "--api-url", api_url],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def measure_fleet(scratch: Path, latency_scale: float) -> dict[str, Any]:  # the fleet's hook
    """benchmarks/fleet.py in its own process, as the verification figures are."""
    out = scratch / "fleet.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.fleet", "--out", str(out),
         "--latency-scale", str(latency_scale)],
        cwd=ROOT, env={**os.environ, **quiet_env()}, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        tail = proc.stdout[-3000:] + proc.stderr[-3000:]
        raise RuntimeError(f"the fleet benchmark failed:\n{tail}")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def _write(out: Path, results: dict[str, Any], bench: Bench) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    markdown = render_markdown(results)
    if "caching" in results:
        markdown += "\n" + "\n".join(caching_markdown(results["caching"]))
    if "fleet" in results:
        markdown += "\n" + "\n".join(fleet_markdown(results["fleet"]))
    (out / "results.md").write_text(markdown)
    agentmill = bench.groups[f"{bench.options.headline}-main"]["runs"]["agentmill"]
    plan = plan_phases(team_of_size(bench.options.roles, bench.options.seed))
    (out / "timeline.svg").write_text(
        render_timeline_svg(agentmill["agents"], plan, results["critical_path"], results)
    )


def _api_url(text: str) -> tuple[str, str]:
    """`--api-url URL` stands in for the default server, `--api-url postgres=URL` for one."""
    name, sep, url = text.partition("=")
    return (name, url) if sep and not name.startswith("http") else ("default", text)


def _names(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="agentmill on the Prefect servers people run (embedded, default, postgres, "
        "tuned), "
        "against sequential and level-barrier baselines and the critical path; writes "
        "results.md, results.json and timeline.svg.",
    )
    parser.add_argument("--roles", type=int, default=32, help="main team size (32: the default)")
    parser.add_argument(
        "--scales", default="20,40,80", help="team sizes for the scaling runs ('' for none)"
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the latencies and teams")
    parser.add_argument(
        "--latency-scale", type=float, default=1.0, help="multiplies every tier's latency"
    )
    parser.add_argument("--out", default=str(ROOT / "benchmarks"), help="where results go")
    parser.add_argument(
        "--configs",
        default=",".join(Options.configs),
        help=f"server configurations to run ({', '.join(CONFIGS)})",
    )
    parser.add_argument(
        "--headline", default="default", help="the configuration the detail tables describe"
    )
    parser.add_argument(
        "--scale-configs", default="embedded,default", help="configurations run at every size"
    )
    parser.add_argument(
        "--api-url",
        action="append",
        default=[],
        metavar="[CONFIG=]URL",
        help="an existing Prefect API to use instead of starting a configuration's server "
        "(default: the `default` one); repeatable",
    )
    parser.add_argument(
        "--samples", type=int, default=5, help="repeats of the noisy runs (median reported)"
    )
    parser.add_argument("--scale-samples", type=int, default=3, help="repeats at each size")
    parser.add_argument(
        "--cli-samples", type=int, default=3, help="runs of the README's command per server"
    )
    parser.add_argument(
        "--no-cli-fresh", action="store_true", help="skip the command on a fresh PREFECT_HOME"
    )
    parser.add_argument("--keep-scratch", action="store_true", help="keep workdirs and logs")
    parser.add_argument(
        "--no-fleet", action="store_true", help="skip the fleet runs (PostgreSQL, two workers)"
    )
    parser.add_argument(
        "--no-caching", action="store_true", help="skip the prompt-caching measurement"
    )
    parser.add_argument(
        "--no-verification", action="store_true", help="skip the verification measurement"
    )
    args = parser.parse_args(argv)
    options = Options(
        roles=args.roles,
        scales=tuple(int(s) for s in _names(args.scales)),
        seed=args.seed,
        latency_scale=args.latency_scale,
        configs=_names(args.configs),
        headline=args.headline,
        scale_configs=_names(args.scale_configs),
        api_urls=dict(_api_url(a) for a in args.api_url),
        samples=max(1, args.samples),
        scale_samples=max(1, args.scale_samples),
        cli_samples=max(0, args.cli_samples),
        cli_fresh=not args.no_cli_fresh,
        keep_scratch=args.keep_scratch,
        fleet=not args.no_fleet,
        caching=not args.no_caching,
        verification=not args.no_verification,
    )
    results = run_benchmark(Path(args.out), options)
    print((Path(args.out) / "results.md").read_text())
    print(f"benchmark took {results['benchmark_s']} s; results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
