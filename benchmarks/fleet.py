"""The fleet figures: eight builds at once on a Prefect server with two workers.

    python -m benchmarks.fleet --out /tmp/fleet.json     # alone, a few minutes
    python -m benchmarks.run                             # as part of the whole benchmark

- `postgres_wall_8_over_1` / `sqlite_wall_8_over_1`: eight build-app runs
  created at once through the deployment on a process pool with two workers,
  against one run alone, at the benchmark's tier latencies; each wall runs
  from creating the runs to the last one's end, as the user who pressed Run
  sees it. Every service of the server is on (task runs and events stored).
- `http_429_without_limits` / `http_429_with_limits`: the same eight builds
  (a 10-role team) against a fake whose per-model request limit they overrun,
  first with no agentmill limit on the server, then with `limits apply`'s.
- `limit_ms_per_request`: what taking a tier's in-flight and per-minute limits
  costs one model request, uncontended, on the PostgreSQL server.
- What stands in the way of the first goal, on PostgreSQL: `cpu_s_per_build`,
  the CPU seconds the eight builds cost per build (flow-run processes, workers,
  server, PostgreSQL, the harness's fake; benchmarks/cpu.py);
  `cpu_bound_wall_8_over_1`, the least wall(8) / wall(1) two cores allow for
  that CPU (eight builds' CPU over the cores, against wall(1)); and
  `spawn_to_first_request_s`, each run's median seconds from its worker taking
  it (PENDING) to its first model request, split at RUNNING (process start,
  imports, loading the flow) and its first request (the flow's set-up).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.cpu import tree_cpu_s
from benchmarks.fake_api import BenchMessagesAPI
from benchmarks.latency import TierLatency
from benchmarks.teams import generated_team
from tasks.build.offline_script import build_reply
from tasks.model.limits import TIERS
from tasks.testing.fleet import Fleet
from tasks.testing.messages_api import FakeMessagesAPI

BENCH_KEY = "sk-ant-api03-benchmark-fake-key-000000000000"
BUILDS = 8
WINDOW_S = 5.0  # the fake's limit window: a minute, shrunk so the runs stay short
PER_WINDOW = 30  # requests per tier the fake accepts in any window
IN_FLIGHT = 8
LIMIT_SAMPLES = 40
# A run that has not ended by then counts as stuck: the figure is reported as missing
# (measured once on SQLite: one of eight runs stalled after its start, with the server
# answering "database is locked").
WALL_TIMEOUT_S = 900.0
CORES = os.cpu_count() or 1


def _env(base_url: str) -> dict[str, str]:
    return {"ANTHROPIC_API_KEY": BENCH_KEY, "ANTHROPIC_BASE_URL": base_url}


async def _wall(fleet: Fleet, params: list[dict[str, Any]]) -> float:
    """Seconds from creating the runs to the last one's end; every run must complete."""
    wall, runs = await _runs(fleet, params)
    failed = _failures(runs)
    if failed:
        log = fleet.server.log_text()[-3000:] if fleet.server is not None else ""
        raise RuntimeError(
            f"{len(failed)} fleet benchmark runs failed: {failed[0]}\nthe server's log:\n{log}"
        )
    return wall


async def _runs(fleet: Fleet, params: list[dict[str, Any]]) -> tuple[float, dict[Any, Any]]:
    """The wall of `params`' runs, created at once, and the runs, final (failed ones too)."""
    started = time.perf_counter()
    ids = [await fleet.start(p) for p in params]
    runs = await fleet.wait(ids, within_s=WALL_TIMEOUT_S)
    return time.perf_counter() - started, runs


def _failures(runs: dict[Any, Any]) -> list[str]:
    """What each run that did not complete said (its final state's message)."""
    return [
        f"{r.state.type.value}: {r.state.message}"
        for r in runs.values()
        if r.state.type.value != "COMPLETED"
    ]


def _fleet_cpu_s(fleet: Fleet) -> dict[str, float]:
    """CPU seconds so far, by part: what the workers' flow-run processes, the workers, the
    server, PostgreSQL and this process (the fake Messages API, the polling) have spent."""
    workers = tree_cpu_s(w.pid for w in fleet.workers)
    server = tree_cpu_s([fleet.server.pid] if fleet.server and fleet.server.pid else [])
    pg = tree_cpu_s([fleet.postgres.pid] if fleet.postgres and fleet.postgres.pid else [])
    harness = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "flow_runs": workers["children"],
        "workers": workers["own"],
        "server": server["own"] + server["children"],
        "postgres": pg["own"] + pg["children"],
        "harness": harness.ru_utime + harness.ru_stime,
    }


def _cpu_spent(before: dict[str, float], after: dict[str, float], builds: int) -> dict[str, float]:
    """CPU seconds per build between two readings, by part and in all."""
    parts = {k: round((after[k] - before[k]) / builds, 2) for k in before}
    return {**parts, "total": round(sum(parts.values()), 2)}


async def _start_delays(fleet: Fleet, runs: dict[Any, Any], first_at: dict[Any, float]) -> Any:
    """Per run, from its server-side states and the fake's first request carrying its idea:
    seconds SCHEDULED -> PENDING (a worker took it), PENDING -> RUNNING (the process started,
    imported Prefect and agentmill, loaded the flow), RUNNING -> first model request."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    keys = ("scheduled_to_pending_s", "pending_to_running_s", "running_to_first_request_s",
            "pending_to_first_request_s")  # fmt: skip
    parts: dict[str, list[float]] = {k: [] for k in keys}
    with temporary_settings(updates={PREFECT_API_URL: fleet.api_url}):
        async with get_client() as client:
            for run_id in runs:
                states = await client.read_flow_run_states(run_id)
                at = {s.type.value: s.timestamp.timestamp() for s in reversed(states)}  # firsts
                first = first_at.get(run_id)
                if first is None or not {"SCHEDULED", "PENDING", "RUNNING"} <= set(at):
                    continue
                parts["scheduled_to_pending_s"].append(at["PENDING"] - at["SCHEDULED"])
                parts["pending_to_running_s"].append(at["RUNNING"] - at["PENDING"])
                parts["running_to_first_request_s"].append(first - at["RUNNING"])
                parts["pending_to_first_request_s"].append(first - at["PENDING"])
    return {k: round(statistics.median(v), 2) if v else None for k, v in parts.items()}


def _first_requests(api: FakeMessagesAPI, ideas: dict[Any, str]) -> dict[Any, float]:
    """Each run's first model request (wall-clock time), found by its idea in the request."""
    offset = time.time() - time.monotonic()  # the fake stamps requests with time.monotonic()
    first: dict[Any, float] = {}
    for seen in sorted(api.requests, key=lambda r: r.at):
        text = json.dumps(seen.body)
        for run_id, idea in ideas.items():
            if run_id not in first and idea in text:
                first[run_id] = seen.at + offset
    return first


def _save_team(fleet: Fleet, name: str, roles: int) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    team = generated_team(roles)
    team.verify = False
    with temporary_settings(updates={PREFECT_API_URL: fleet.api_url}):
        team.save(name, overwrite=True)


def wall_8_over_1(database: str, scratch: Path, latency_scale: float) -> dict[str, Any]:
    """wall(8) / wall(1) on a fleet of two workers whose server runs on `database`, with the
    CPU each build costs and how long each run takes to reach its first model request."""
    with BenchMessagesAPI() as api:
        tag = f"fleet-{database}"
        base_url = api.register(tag, TierLatency(seed=7, scale=latency_scale))
        with Fleet(scratch / database, workers=2, env=_env(base_url), database=database) as fleet:
            stamp = time.time_ns()

            def params(i: int) -> dict[str, Any]:
                return {
                    "idea": f"A todo app with React and FastAPI [fleet {database} {i} {stamp}]",
                    "workdir": str(scratch / database / f"build-{i}"),
                    "provider": "anthropic",
                }

            measured: dict[str, Any] = {"load_at_start": _load()}
            for label, indexes in (("1", [0]), ("8", range(1, BUILDS + 1))):
                cpu_before = _fleet_cpu_s(fleet)
                try:
                    wall, runs = asyncio.run(_runs(fleet, [params(i) for i in indexes]))
                except TimeoutError:
                    measured[f"wall_{label}_s"] = None
                    continue
                measured[f"wall_{label}_s"] = round(wall, 2)
                # A run that failed is a finding, not a crash of the benchmark: on SQLite one of
                # eight has failed on "database is locked" past the client's retries.
                failed = _failures(runs)
                measured[f"failed_{label}"] = len(failed)
                measured[f"failure_{label}"] = failed[0][:300] if failed else None
                measured[f"cpu_s_per_build_{label}"] = _cpu_spent(
                    cpu_before, _fleet_cpu_s(fleet), len(runs)
                )
                ideas = {run.id: run.parameters["idea"] for run in runs.values()}
                delays = asyncio.run(_start_delays(fleet, runs, _first_requests(api, ideas)))
                measured[f"start_delays_{label}"] = delays
            measured["load_at_end"] = _load()
            assert fleet.server is not None
            measured["server_503s"] = fleet.server.retryable_errors()
    one, eight = measured["wall_1_s"], measured["wall_8_s"]
    measured["ratio"] = eight and round(eight / one, 2)
    measured["timed_out"] = eight is None
    if eight is not None:
        cpu_8 = BUILDS * measured["cpu_s_per_build_8"]["total"]
        measured["cpu_bound_wall_8_s"] = round(cpu_8 / CORES, 2)
        measured["cpu_bound_ratio"] = round(cpu_8 / CORES / one, 2)
    return measured


def _load() -> str:
    return Path("/proc/loadavg").read_text().strip()


def http_429s(scratch: Path) -> dict[str, int]:
    """429s the fake answered to eight builds, without and then with the fleet's limits."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tasks.cli.limits import apply_limits, in_flight_spec, per_minute_spec

    fake = FakeMessagesAPI(
        script=lambda body: build_reply(body, project=False),
        requests_per_window=dict.fromkeys(TIERS, PER_WINDOW),
        window_s=WINDOW_S,
    )
    counts: dict[str, int] = {}
    with fake, Fleet(scratch / "limits", workers=2, env=_env(fake.base_url)) as fleet:
        _save_team(fleet, "fleet-ten", 10)
        stamp = time.time_ns()
        for label in ("without", "with"):
            if label == "with":
                specs = [per_minute_spec(t, PER_WINDOW, window_s=WINDOW_S) for t in TIERS]
                with temporary_settings(updates={PREFECT_API_URL: fleet.api_url}):
                    asyncio.run(apply_limits(specs + [in_flight_spec(t, IN_FLIGHT) for t in TIERS]))
            fake.rate_limited = 0
            params = [
                {"idea": f"fleet limits {label} {i} {stamp}", "team": "fleet-ten",
                 "workdir": str(scratch / "limits" / label / str(i)), "provider": "anthropic"}
                for i in range(BUILDS)
            ]  # fmt: skip
            # Without limits some builds may run out of retries: the 429s are the figure.
            with contextlib.suppress(RuntimeError):
                asyncio.run(_wall(fleet, params))
            counts[label] = fake.rate_limited
            counts[f"{label}_busiest_window"] = max(fake.request_rate(t) for t in TIERS)
            fake.requests.clear()
    return counts


def limit_cost_ms(scratch: Path) -> float:
    """Milliseconds one request pays for its tier's two limits, uncontended (median)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tasks.cli.limits import apply_limits, in_flight_spec, per_minute_spec
    from tasks.model.limits import forget_limits, request_slot

    async def samples() -> list[float]:
        times = []
        for _ in range(LIMIT_SAMPLES):
            started = time.perf_counter()
            async with request_slot("haiku"):
                pass
            times.append(time.perf_counter() - started)
            await asyncio.sleep(0.05)  # uncontended: the bucket refills between requests
        return times

    with (
        Fleet(scratch / "cost", workers=0) as fleet,
        temporary_settings(updates={PREFECT_API_URL: fleet.api_url}),
    ):
        forget_limits()
        bare = statistics.median(asyncio.run(samples()))
        asyncio.run(apply_limits([per_minute_spec("haiku", 6000), in_flight_spec("haiku", 100)]))
        forget_limits()
        limited = statistics.median(asyncio.run(samples()))
        forget_limits()
    return round((limited - bare) * 1000, 1)


def measure_fleet(latency_scale: float = 1.0) -> dict[str, Any]:
    """results.json's "fleet" section."""
    scratch = Path(tempfile.mkdtemp(prefix="agentmill-bench-fleet-"))
    try:
        postgres = wall_8_over_1("postgres", scratch, latency_scale)
        sqlite = wall_8_over_1("sqlite", scratch, latency_scale)
        limits = http_429s(scratch)
        cost_ms = limit_cost_ms(scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    cpu = postgres.get("cpu_s_per_build_8", {})
    delays = postgres.get("start_delays_8", {})
    return {
        "postgres_wall_8_over_1": postgres["ratio"],
        "sqlite_wall_8_over_1": sqlite["ratio"],
        # What stands in the way on PostgreSQL: the CPU the eight builds need, over the cores.
        "cpu_s_per_build": cpu.get("total"),
        "cpu_bound_wall_8_over_1": postgres.get("cpu_bound_ratio"),
        "spawn_to_first_request_s": delays.get("pending_to_first_request_s"),
        "http_429_with_limits": limits["with"],
        "http_429_without_limits": limits["without"],
        "limit_ms_per_request": cost_ms,
        "detail": {"postgres": postgres, "sqlite": sqlite, "limits": limits,
                   "builds": BUILDS, "workers": 2, "window_s": WINDOW_S,
                   "per_window": PER_WINDOW},
    }  # fmt: skip


def _cost_lines(pg: dict[str, Any]) -> list[str]:
    """Where a build's CPU goes on PostgreSQL, and how late each run reaches the model."""
    cpu1, cpu8 = pg.get("cpu_s_per_build_1"), pg.get("cpu_s_per_build_8")
    d1, d8 = pg.get("start_delays_1") or {}, pg.get("start_delays_8") or {}
    if not cpu1 or not cpu8:
        return []
    parts = [k for k in cpu8 if k != "total"]
    lines = [
        "What stands in the way on PostgreSQL: CPU seconds per build, by process "
        f"(load average at start {pg['load_at_start']}, at end {pg['load_at_end']}; "
        "benchmarks/cpu.py):",
        "",
        "| builds at once | " + " | ".join(p.replace("_", " ") for p in parts) + " | total |",
        "|---|" + "---|" * (len(parts) + 1),
    ]
    for label, cpu in (("1", cpu1), ("8", cpu8)):
        lines.append(f"| {label} | " + " | ".join(f"{cpu[p]:.2f}" for p in parts)
                     + f" | {cpu['total']:.2f} |")  # fmt: skip
    lines += [
        "",
        f"Eight builds need {BUILDS * cpu8['total']:.1f} CPU seconds; on {CORES} cores that is "
        f"at least {pg['cpu_bound_wall_8_s']} s of wall, {pg['cpu_bound_ratio']} times wall(1): "
        "the ratio this machine allows at best, whatever the orchestration does.",
        "",
        "| builds at once | scheduled → a worker takes it | → RUNNING (process start, "
        "imports, flow load) | → first model request (flow set-up) | taken → first request |",
        "|---|---|---|---|---|",
    ]
    keys = ("scheduled_to_pending_s", "pending_to_running_s", "running_to_first_request_s",
            "pending_to_first_request_s")  # fmt: skip
    for label, d in (("1", d1), ("8", d8)):
        lines.append(f"| {label} | " + " | ".join(f"{_s(d.get(k))}" for k in keys) + " |")
    return [*lines, ""]


def _failed(m: dict[str, Any]) -> str:
    return f"{m.get('failed_1', 0)} / {m.get('failed_8', 0)}"


def _failure_lines(servers: dict[str, dict[str, Any]]) -> list[str]:
    """What the first failed run of each server said, where one failed."""
    lines = [
        f"A run on {name} failed; the first said: {m[key]}"
        for name, m in servers.items()
        for key in ("failure_1", "failure_8")
        if m.get(key)
    ]
    lines += [
        f"On {name}, not every run of {label} was final {WALL_TIMEOUT_S:.0f} s after they were "
        "created: a run that hangs is counted here, not in a wall."
        for name, m in servers.items()
        for label in ("1", "8")
        if f"wall_{label}_s" in m and m[f"wall_{label}_s"] is None
    ]
    return [*lines, ""] if lines else []


def _wall_cell(wall: float | None) -> str:
    """A wall, or why there is none: a run still not final when the harness stopped waiting."""
    return f"not final in {WALL_TIMEOUT_S:.0f} s" if wall is None else f"{wall} s"


def _s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


def fleet_markdown(f: dict[str, Any]) -> list[str]:
    """The results.md section."""
    d = f["detail"]
    pg, lite, lim = d["postgres"], d["sqlite"], d["limits"]
    return [
        "## Fleet",
        "",
        f"{d['builds']} build-app runs created at once through the deployment, "
        f"{d['workers']} process workers, every server service on, at the benchmark's "
        "latencies; each wall from creating the runs to the last one's end (goal ≤ 1.3).",
        "",
        "| server | wall(1) | wall(8) | wall(8) / wall(1) | 503s (database locked) | runs "
        "that failed (of 1 / of 8) |",
        "| --- | --- | --- | --- | --- | --- |",
        *(
            f"| {name} | {_wall_cell(m['wall_1_s'])} | {_wall_cell(m['wall_8_s'])} | "
            f"{'n/a' if m['ratio'] is None else m['ratio']} | {m['server_503s']} | {_failed(m)} |"
            for name, m in (("PostgreSQL", pg), ("SQLite", lite))
        ),
        "",
        *_failure_lines({"PostgreSQL": pg, "SQLite": lite}),
        *_cost_lines(pg),
        f"A fake limiting each model tier to {d['per_window']} requests per {d['window_s']:g} s, "
        f"eight 10-role builds: {lim['without']} 429s without agentmill's limits (busiest "
        f"window {lim['without_busiest_window']}), {lim['with']} with them (busiest window "
        f"{lim['with_busiest_window']}). A tier's two limits cost "
        f"{f['limit_ms_per_request']} ms per model request, uncontended.",
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fleet", description=__doc__)
    parser.add_argument("--out", help="write the figures here as JSON (else print them)")
    parser.add_argument("--latency-scale", type=float, default=1.0)
    args = parser.parse_args(argv)
    figures = json.dumps(measure_fleet(args.latency_scale), indent=2)
    if args.out:
        Path(args.out).write_text(figures + "\n")
    print(figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
