"""What verification costs: the sandbox's start-up per command, and its share of an offline build.

    python -m benchmarks.verification          # about a minute; prints JSON
    python -m benchmarks.verification --api-url URL   # on that Prefect server

Two measurements, each against a baseline run in the same process:

- start-up: the median time to run `true` as a plain subprocess (the
  baseline), in the fallback sandbox (scrubbed environment, rlimits,
  `unshare -n`) and under bubblewrap;
- the offline build of the default team (which writes a real project with
  one bug, so its implementation phase goes fail -> fix -> pass) with
  verification on and off, on a private Prefect server: the wall times, the
  time the checks nodes took, and how many agents started while some phase's
  checks ran (checks must not serialise the graph: agents that do not depend
  on them proceed).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from tasks.common.processes import run_process

SAMPLES = 15


async def startup_ms(samples: int = SAMPLES) -> dict[str, float | None]:
    """Median milliseconds to run `true`: plain subprocess, fallback sandbox, bubblewrap."""
    # Imported here: the sandbox's logging imports Prefect, which must see the
    # environment main() sets first.
    from tasks.common.sandbox import Bubblewrap, PlainProcess, SandboxLimits, _working_bwrap

    results: dict[str, float | None] = {}
    with tempfile.TemporaryDirectory(prefix="agentmill-bench-sandbox-") as scratch:
        tree = Path(scratch)
        env = {"PATH": "/usr/bin:/bin"}

        async def plain() -> None:
            await run_process(["true"], cwd=tree, env=env, timeout_s=30)

        runners: dict[str, Any] = {"subprocess": plain}
        fallback = PlainProcess()
        runners["process"] = lambda: fallback.run(tree, ["true"], limits=SandboxLimits())
        executable = _working_bwrap()
        if executable is not None:
            bwrap = Bubblewrap(executable)
            runners["bwrap"] = lambda: bwrap.run(tree, ["true"], limits=SandboxLimits())
        else:
            results["bwrap"] = None
        for name, runner in runners.items():
            await runner()  # warm: the first start pays imports and probes
            times = []
            for _ in range(samples):
                began = time.perf_counter()
                await runner()
                times.append((time.perf_counter() - began) * 1000)
            results[name] = round(statistics.median(times), 2)
    return results


def build_share(api_url: str, scratch: Path) -> dict[str, Any]:
    """The default team's offline build with verification on, then off (fresh ideas, no cache)."""
    os.environ["PREFECT_API_URL"] = api_url
    from blocks.team import default_team
    from flows.build_app import abuild_app

    off = f"bench-noverify-{uuid.uuid4().hex[:8]}"
    default_team().model_copy(update={"verify": False}).save(off)
    runs: dict[str, Any] = {}
    for name, team in (("verify", "default"), ("no_verify", off)):
        workdir = scratch / name
        idea = f"A todo app with React and FastAPI (verification benchmark {uuid.uuid4()})"
        result = asyncio.run(
            abuild_app(idea=idea, workdir=str(workdir), team=team, provider="offline")
        )
        runs[name] = result
    verified = runs["verify"]
    spans: dict[str, tuple[float, float]] = {}
    for r in verified.verification.rounds:
        start, end = spans.get(r.phase, (r.started_s, r.finished_s))
        spans[r.phase] = (min(start, r.started_s), max(end, r.finished_s))
    checks_s = sum(end - start for start, end in spans.values())
    # agents that ran while some phase's checks did (not the fix agents the checks started)
    during = {
        a.role
        for a in verified.agents
        for start, end in spans.values()
        if a.started_s < end and a.started_s + a.duration_s > start and "_FIX_" not in a.role
    }
    return {
        "build_wall_s": {
            "verify": round(verified.metrics.wall_s, 3),
            "no_verify": round(runs["no_verify"].metrics.wall_s, 3),
        },
        "checks_s": round(checks_s, 3),
        "share_of_wall": round(checks_s / verified.metrics.wall_s, 3),
        "verdict": verified.verification.status,
        "rounds": len(verified.verification.rounds),
        "fix_agents": [a.role for a in verified.agents if "_FIX_" in a.role],
        "agents_running_during_checks": sorted(during),
    }


def measure(api_url: str, scratch: Path) -> dict[str, Any]:
    return {"sandbox_start_ms": asyncio.run(startup_ms()), **build_share(api_url, scratch)}


def main(argv: list[str] | None = None) -> int:
    """Print the measurements as JSON; `--api-url URL` uses that Prefect server."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--api-url"] and len(args) == 2:
        os.environ["PREFECT_API_URL"] = args[1]
        with tempfile.TemporaryDirectory(prefix="agentmill-bench-verify-") as scratch:
            print(json.dumps(measure(args[1], Path(scratch))))
        return 0
    from tasks.testing.prefect_server import QUIET_OFF, PrefectServer

    with (
        tempfile.TemporaryDirectory(prefix="agentmill-bench-verify-") as scratch,
        PrefectServer(services_off=QUIET_OFF, root=Path(scratch)) as server,
    ):
        os.environ["PREFECT_HOME"] = str(server.home)
        os.environ["PREFECT_API_URL"] = server.api_url
        print(json.dumps(measure(server.api_url, Path(scratch)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
