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
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

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


def _env(base_url: str) -> dict[str, str]:
    return {"ANTHROPIC_API_KEY": BENCH_KEY, "ANTHROPIC_BASE_URL": base_url}


async def _wall(fleet: Fleet, params: list[dict[str, Any]]) -> float:
    """Seconds from creating the runs to the last one's end; every run must complete."""
    started = time.perf_counter()
    ids = [await fleet.start(p) for p in params]
    runs = await fleet.wait(ids, within_s=WALL_TIMEOUT_S)
    wall = time.perf_counter() - started
    failed = [r.state.message for r in runs.values() if r.state.type.value != "COMPLETED"]
    if failed:
        raise RuntimeError(f"{len(failed)} fleet benchmark runs failed: {failed[0]}")
    return wall


def _save_team(fleet: Fleet, name: str, roles: int) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    team = generated_team(roles)
    team.verify = False
    with temporary_settings(updates={PREFECT_API_URL: fleet.api_url}):
        team.save(name, overwrite=True)


def wall_8_over_1(database: str, scratch: Path, latency_scale: float) -> dict[str, Any]:
    """wall(8) / wall(1) on a fleet of two workers whose server runs on `database`."""
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

            one = asyncio.run(_wall(fleet, [params(0)]))
            try:
                eight: float | None = asyncio.run(
                    _wall(fleet, [params(i) for i in range(1, BUILDS + 1)])
                )
            except TimeoutError:
                eight = None
            assert fleet.server is not None
            locked = fleet.server.retryable_errors()
    return {"wall_1_s": round(one, 2), "wall_8_s": eight and round(eight, 2),
            "ratio": eight and round(eight / one, 2), "server_503s": locked,
            "timed_out": eight is None}  # fmt: skip


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
    return {
        "postgres_wall_8_over_1": postgres["ratio"],
        "sqlite_wall_8_over_1": sqlite["ratio"],
        "http_429_with_limits": limits["with"],
        "http_429_without_limits": limits["without"],
        "limit_ms_per_request": cost_ms,
        "detail": {"postgres": postgres, "sqlite": sqlite, "limits": limits,
                   "builds": BUILDS, "workers": 2, "window_s": WINDOW_S,
                   "per_window": PER_WINDOW},
    }  # fmt: skip


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
        "| server | wall(1) | wall(8) | wall(8) / wall(1) | 503s (database locked) |",
        "| --- | --- | --- | --- | --- |",
        f"| PostgreSQL | {pg['wall_1_s']} s | {pg['wall_8_s']} s | {pg['ratio']} | "
        f"{pg['server_503s']} |",
        f"| SQLite | {lite['wall_1_s']} s | {lite['wall_8_s']} s | {lite['ratio']} | "
        f"{lite['server_503s']} |",
        "",
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
