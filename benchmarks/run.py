"""`python -m benchmarks.run`: agentmill against its baselines and the critical path, in one run.

One command, one harness process: it starts the fake Messages API (seeded
tier latencies) and a private Prefect server, then one process per team size
for the runs themselves (so each size's peak RSS is its own), and writes
`benchmarks/results.md`, `results.json` and `timeline.svg`. Everything
counted (requests, tokens, the critical path) comes from what the fake
served, not from what the runs say about themselves.

    python -m benchmarks.run                     # the full benchmark, a few minutes
    python -m benchmarks.run --roles 8 --scales 6 --latency-scale 0.05 --out /tmp/bench
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
from benchmarks.caching import caching_markdown
from benchmarks.caching import measure as measure_caching
from benchmarks.fake_api import BenchMessagesAPI
from benchmarks.fleet import fleet_markdown
from benchmarks.latency import TierLatency
from benchmarks.machine import describe_machine, load_average, now_iso
from benchmarks.report import render_markdown, render_timeline_svg
from benchmarks.teams import team_of_size, team_shape
from tasks.agents.loop import pointer_tokens
from tasks.build.offline_script import REQUESTS_PER_AGENT
from tasks.build.planning import Plan, plan_phases
from tasks.build.report import critical_path
from tasks.testing.prefect_server import QUIET_OFF, PrefectServer, quiet_env

ROOT = Path(__file__).resolve().parents[1]

# The project's goals (issue 3); reported, never enforced.
TARGETS = {
    "wall_vs_critical_path": 1.10,
    "faster_than_level_barriers": 0.15,
    "overhead_ms_per_task": 25.0,
    "cached_rerun_requests": 0,
    "cached_rerun_share_of_first": 0.10,
    "peak_rss_mb_at_40_roles": 300.0,
}


@dataclass
class Options:
    """What `python -m benchmarks.run` measures; the defaults are the committed run's."""

    roles: int = 32  # the main team: 32 is the default team, other sizes are generated
    scales: tuple[int, ...] = (10, 20, 40, 80)
    seed: int = 7
    latency_scale: float = 1.0
    api_url: str | None = None  # an existing Prefect API instead of a private server
    all_services: bool = True  # also run agentmill on a server with every service on
    samples: int = 3  # repeats of the noisy runs; the report shows their median
    keep_scratch: bool = False
    fleet: bool = True  # eight builds on two workers, PostgreSQL and SQLite (benchmarks/fleet.py)
    caching: bool = True  # also measure prompt caching (benchmarks.caching), ~2 minutes


@dataclass
class Bench:
    """One benchmark run's shared pieces: the fake, the Prefect API, a scratch dir."""

    api: BenchMessagesAPI
    api_url: str
    scratch: Path
    options: Options
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    caching: dict[str, Any] | None = None  # results.json's "caching" (benchmarks.caching)

    def run_group(self, group: str, roles: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
        """Run `runs` in one fresh process; returns its results joined with the fake's counts."""
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
        spec = {"roles": roles, "seed": self.options.seed, "runs": runs}
        spec_path, out_path = home / "spec.json", home / "out.json"
        spec_path.write_text(json.dumps(spec, indent=2))
        env = {
            **os.environ,
            **quiet_env(),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_HOME": str(home / "prefect-home"),
            "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(home / "storage" / "default"),
        }
        log = home / "process.log"
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
            result["runs"][name] = {**median, "samples_s": [m["wall_s"] for m in picked]}
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


def main_runs(plan: Plan, scratch: Path, samples: int = 3) -> list[dict[str, Any]]:
    """The main team's runs, in order; the reruns share the first run's workdir and cache."""
    rerun = {
        "idea": "A todo app with React and FastAPI [bench main/rerun]",
        "workdir": str(scratch / "main" / "work" / "rerun"),
        "storage": str(scratch / "main" / "storage" / "rerun"),
    }
    zero = {"zero": True}
    return [
        {"name": "sequential", "kind": "baseline", "schedule": "sequential"},
        {"name": "level_barriers", "kind": "baseline", "schedule": "level_barriers"},
        {"name": "asyncio_dataflow", "kind": "baseline", "schedule": "asyncio_dataflow"},
        *_samples("agentmill", max(1, samples - 1), kind="agentmill"),
        {"name": "zero_asyncio", "kind": "baseline", "schedule": "asyncio_dataflow", **zero},
        *_samples("zero_agentmill", samples, kind="agentmill", **zero),
        *_samples("zero_agentmill_sync", samples, kind="agentmill", sync=True, **zero),
        *_samples("zero_floor", samples, kind="floor", **zero),
        {"name": "empty_flows", "kind": "empty_flows"},
        # A third cold sample of agentmill, and the first run of the reruns.
        {"name": "rerun_first", "sample_of": "agentmill", "kind": "agentmill", **rerun},
        *_samples("rerun_cached", samples, kind="agentmill", **rerun),
        {"name": "rerun_incremental", "kind": "agentmill", "change_role": mid_graph_role(plan)}
        | rerun,
    ]


def scaling_runs(samples: int = 3) -> list[dict[str, Any]]:
    return [
        {"name": "level_barriers", "kind": "baseline", "schedule": "level_barriers"},
        *_samples("agentmill", samples, kind="agentmill"),
        *_samples("zero_agentmill", samples, kind="agentmill", zero=True),
        *_samples("zero_floor", samples, kind="floor", zero=True),
    ]


def all_services_runs(samples: int = 3) -> list[dict[str, Any]]:
    return [
        {"name": "agentmill", "kind": "agentmill"},
        *_samples("zero_agentmill", samples, kind="agentmill", zero=True),
    ]


def summarise_group(bench: Bench, group: str, roles: int) -> dict[str, Any]:
    """The figures of one team size, from its process's results and the fake's counts."""
    result = bench.groups[group]
    runs = result["runs"]
    team = team_of_size(roles, bench.options.seed)
    plan = plan_phases(team)
    n = len(plan.order)
    cp, cp_roles = bench.served_critical_path(runs["agentmill"]["tag"], plan)
    agentmill = runs["agentmill"]["wall_s"]
    level = runs["level_barriers"]["wall_s"]
    return {
        "roles": n,
        "shape": team_shape(team),
        "agentmill_s": agentmill,
        "agentmill_samples_s": runs["agentmill"].get("samples_s", [agentmill]),
        "agentmill_build_s": runs["agentmill"]["build_wall_s"],
        "agentmill_wall_parts": bench.wall_parts(runs["agentmill"], cp),
        "critical_path_s": round(cp, 4),
        "critical_path": cp_roles,
        "ratio_to_critical_path": round(agentmill / cp, 3) if cp else None,
        "level_barrier_s": level,
        "faster_than_level_barriers": round(1 - agentmill / level, 3),
        "level_barrier_headroom": level_barrier_headroom(team, bench.options.seed),
        "overhead_ms_per_task": round(1000 * runs["zero_agentmill"]["wall_s"] / n, 1),
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


def summarise(bench: Bench, server: dict[str, Any]) -> dict[str, Any]:
    opts = bench.options
    team = team_of_size(opts.roles, opts.seed)
    plan = plan_phases(team)
    n = len(plan.order)
    main = bench.groups["main"]["runs"]
    head = summarise_group(bench, "main", opts.roles)
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
    scaling = [head] + [summarise_group(bench, f"scale-{s}", s) for s in opts.scales]
    scaling.sort(key=lambda s: s["roles"])
    rss_40 = next((s["peak_rss_mb"] for s in scaling if s["roles"] == 40), None)
    _, ideal_levels = ideal_walls(team, TierLatency(seed=opts.seed))
    z = {name: main[name] for name in ("zero_agentmill", "zero_agentmill_sync", "zero_floor")}
    results: dict[str, Any] = {
        "date": now_iso(),
        "machine": describe_machine(),
        "seed": opts.seed,
        "latency_scale": opts.latency_scale,
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
        "peak_rss_mb": bench.groups["main"]["peak_rss_mb"],
        "peak_rss_mb_at_40_roles": rss_40,
        "startup_excluded": {
            "prefect_server_start_s": server.get("start_s"),
            "process_import_s": bench.groups["main"]["import_s"],
            "first_flow_call_s": bench.groups["main"]["warm_up_s"],
        },
        "prefect_server": server,
        "scaling": [{k: s[k] for k in _SCALING_KEYS} for s in scaling],
        "scaling_detail": scaling,
    }
    if "all-services" in bench.groups:
        runs = bench.groups["all-services"]["runs"]
        results["all_services"] = {
            "agentmill_s": runs["agentmill"]["wall_s"],
            "ratio_to_critical_path": round(runs["agentmill"]["wall_s"] / cp, 3),
            "overhead_ms_per_task": round(1000 * runs["zero_agentmill"]["wall_s"] / n, 1),
            "server": bench.groups["all-services"]["server"],
        }
    if bench.caching is not None:
        results["caching"] = bench.caching
    results["targets"] = _targets(results)
    return results


def _targets(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target: the measured value, the goal, and whether it was met."""
    values = {
        "wall_vs_critical_path": r["ratio_to_critical_path"],
        "faster_than_level_barriers": r["faster_than_level_barriers"],
        "overhead_ms_per_task": r["overhead_ms_per_task"],
        "cached_rerun_requests": r["cached_rerun_requests"],
        "cached_rerun_share_of_first": r["cached_rerun_share_of_first"],
        "peak_rss_mb_at_40_roles": r["peak_rss_mb_at_40_roles"],
    }
    at_least = {"faster_than_level_barriers"}
    out = {}
    for key, value in values.items():
        goal = TARGETS[key]
        met = None if value is None else (value >= goal if key in at_least else value <= goal)
        out[key] = {"value": value, "target": goal, "met": met}
    return out


def _server_info(server: PrefectServer) -> dict[str, Any]:
    return {
        "services_on": [s.lower() for s in server.services_on],
        "services_off": [s.lower() for s in server.services_off],
        "start_s": round(server.start_s, 2),
        "peak_rss_mb": server.peak_rss_mb(),
        "retryable_errors": server.retryable_errors(),
    }


def run_benchmark(out: Path, options: Options) -> dict[str, Any]:
    """Run everything and write the results into `out`; returns results.json's content."""
    scratch = Path(tempfile.mkdtemp(prefix="agentmill-bench-"))
    started = time.perf_counter()
    load_at_start = load_average()
    try:
        with BenchMessagesAPI() as api:
            if options.api_url is not None:
                bench = Bench(api, options.api_url, scratch, options)
                _run_main_and_scaling(bench)
                server_info: dict[str, Any] = {"external": True}
            else:
                with PrefectServer(services_off=QUIET_OFF, root=scratch) as server:
                    bench = Bench(api, server.api_url, scratch, options)
                    _run_main_and_scaling(bench)
                    verification = measure_verification(server.api_url, server.home)
                    server_info = _server_info(server)
                if options.all_services:
                    with PrefectServer(services_off=(), root=scratch) as full:
                        other = Bench(api, full.api_url, scratch, options, bench.groups)
                        runs = all_services_runs(options.samples)
                        other.run_group("all-services", options.roles, runs)
                        bench.groups["all-services"]["server"] = _server_info(full)
        results = summarise(bench, server_info)
        if options.api_url is None:
            results["verification"] = verification
        if options.fleet:
            results["fleet"] = measure_fleet(scratch, options.latency_scale)
        results["machine"]["load_average_1m_at_start"] = load_at_start
        results["benchmark_s"] = round(time.perf_counter() - started, 1)
        _write(out, results, bench)
        return results
    finally:
        if not options.keep_scratch:
            shutil.rmtree(scratch, ignore_errors=True)


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


def _run_main_and_scaling(bench: Bench) -> None:
    plan = plan_phases(team_of_size(bench.options.roles, bench.options.seed))
    samples = bench.options.samples
    bench.run_group("main", bench.options.roles, main_runs(plan, bench.scratch, samples))
    for size in bench.options.scales:
        bench.run_group(f"scale-{size}", size, scaling_runs(samples))
    if bench.options.caching:
        scratch = bench.scratch / "caching"
        bench.caching = measure_caching(bench.api_url, scratch, bench.options.seed)


def _write(out: Path, results: dict[str, Any], bench: Bench) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    markdown = render_markdown(results)
    if "caching" in results:
        markdown += "\n" + "\n".join(caching_markdown(results["caching"]))
    if "fleet" in results:
        markdown += "\n" + "\n".join(fleet_markdown(results["fleet"]))
    (out / "results.md").write_text(markdown)
    agentmill = bench.groups["main"]["runs"]["agentmill"]
    plan = plan_phases(team_of_size(bench.options.roles, bench.options.seed))
    (out / "timeline.svg").write_text(
        render_timeline_svg(agentmill["agents"], plan, results["critical_path"], results)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="agentmill against sequential and level-barrier baselines and the "
        "critical path; writes results.md, results.json and timeline.svg.",
    )
    parser.add_argument("--roles", type=int, default=32, help="main team size (32: the default)")
    parser.add_argument(
        "--scales", default="10,20,40,80", help="team sizes for the scaling runs ('' for none)"
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the latencies and teams")
    parser.add_argument(
        "--latency-scale", type=float, default=1.0, help="multiplies every tier's latency"
    )
    parser.add_argument("--out", default=str(ROOT / "benchmarks"), help="where results go")
    parser.add_argument("--api-url", help="use this Prefect API instead of starting a server")
    parser.add_argument(
        "--no-all-services",
        action="store_true",
        help="skip the extra run on a server with every service on",
    )
    parser.add_argument(
        "--samples", type=int, default=3, help="repeats of the noisy runs (median reported)"
    )
    parser.add_argument("--keep-scratch", action="store_true", help="keep workdirs and logs")
    parser.add_argument(
        "--no-fleet", action="store_true", help="skip the fleet runs (PostgreSQL, two workers)"
    )
    parser.add_argument(
        "--no-caching", action="store_true", help="skip the prompt-caching measurement"
    )
    args = parser.parse_args(argv)
    options = Options(
        roles=args.roles,
        scales=tuple(int(s) for s in args.scales.split(",") if s.strip()),
        seed=args.seed,
        latency_scale=args.latency_scale,
        api_url=args.api_url,
        all_services=not args.no_all_services,
        samples=max(1, args.samples),
        keep_scratch=args.keep_scratch,
        fleet=not args.no_fleet,
        caching=not args.no_caching,
    )
    results = run_benchmark(Path(args.out), options)
    print((Path(args.out) / "results.md").read_text())
    print(f"benchmark took {results['benchmark_s']} s; results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
