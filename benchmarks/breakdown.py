"""Where a zero-latency build's seconds go: Prefect's creation of the runs, the run, the close.

At zero model latency a build's wall is all orchestration. Its Prefect API
requests, timed in the run's process (benchmarks.probes), split it in three,
the same way for agentmill and for Prefect's floor (the same flows and tasks,
doing nothing), so the difference between the two is agentmill's own:

- creating: from the call to the moment the last phase subflow runs. The
  flow run and every phase subflow are created one after another, before
  any agent starts (see `Build.start_phases`: on SQLite a creation that
  overlaps a write fails with "database is locked"). Each run is in
  `POST /flow_runs/` with a `Pending` state, then moved to `Running` by one
  `set_state`; so this window ends when the `set_state` of the last of the
  runs has returned.
- running: from there to the parent flow's final `set_state`: the agents,
  the phase commits, each subflow's final state, the artifacts.
- closing: the parent flow's final state and the engine's exit.
"""

from __future__ import annotations

from typing import Any

SET_STATE = "POST /flow_runs/{id}/set_state"
CREATE = "POST /flow_runs/"
WINDOWS = ("creating", "running", "closing")


def split_wall(run: dict[str, Any]) -> dict[str, Any] | None:
    """The three windows of one run: seconds, requests and their seconds, by operation.

    None when the run has no request timeline, or not the shape described above
    (a run that failed before its subflows ran).
    """
    timeline: list[list[Any]] = run.get("api_timeline") or []
    answered = [c for c in timeline if isinstance(c[3], int) and c[3] < 400]  # not 503s
    flows = sum(1 for call in answered if call[2] == CREATE)
    states = sorted((c for c in answered if c[2] == SET_STATE), key=lambda c: c[0])
    if flows == 0 or len(states) < 2 * flows:
        return None
    created = states[flows - 1][0] + states[flows - 1][1]
    closing = states[-1][0]
    bounds = {
        "creating": (0.0, created),
        "running": (created, closing),
        "closing": (closing, max(closing, float(run["wall_s"]))),
    }
    out: dict[str, Any] = {"flow_runs": flows}
    for name, (start, end) in bounds.items():
        inside = [c for c in timeline if start <= c[0] < end]
        ops: dict[str, dict[str, float]] = {}
        for call in inside:
            row = ops.setdefault(call[2], {"count": 0, "seconds": 0.0})
            row["count"] += 1
            row["seconds"] = round(row["seconds"] + call[1], 4)
        out[name] = {
            "seconds": round(end - start, 4),
            "requests": len(inside),
            # Answered 503 ("database is locked" on SQLite): each is followed by the client's
            # back-off of 2 s or more, inside the same window.
            "http_503": sum(1 for c in inside if c[3] == 503),
            "request_seconds": round(sum(c[1] for c in inside), 4),
            "operations": dict(sorted(ops.items(), key=lambda kv: -kv[1]["seconds"])),
        }
    return out


def zero_latency_breakdown(
    agentmill: dict[str, Any], floor: dict[str, Any], agents: int, agent_code_s: float | None
) -> dict[str, Any] | None:
    """agentmill's and the floor's windows side by side, per agent where it is per agent."""
    ours, prefects = split_wall(agentmill), split_wall(floor)
    if ours is None or prefects is None:
        return None
    running_ms = 1000 * ours["running"]["seconds"] / agents
    floor_running_ms = 1000 * prefects["running"]["seconds"] / agents
    return {
        "agents": agents,
        "agentmill": ours,
        "floor": prefects,
        "agent_code_alone_s": agent_code_s,
        # What agentmill adds to Prefect's floor while the runs exist: its agents' own work
        # (the SDK, the tools), its hooks, commits and artifacts, on the loop Prefect runs on.
        "running_ms_per_agent": round(running_ms, 1),
        "floor_running_ms_per_agent": round(floor_running_ms, 1),
        "creating_share": round(ours["creating"]["seconds"] / float(agentmill["wall_s"]), 3),
    }


def breakdown_markdown(name: str, b: dict[str, Any]) -> list[str]:
    """One server's table: each window for agentmill and the floor, and what fills it."""
    ours, floor = b["agentmill"], b["floor"]
    lines = [
        f"**{name}**: where the zero-latency seconds go ({b['agents']} agents, "
        f"{ours['flow_runs']} flow runs: the build and one subflow per phase).",
        "",
        "| window | agentmill | Prefect's floor | what fills it |",
        "|---|---|---|---|",
    ]
    for window in WINDOWS:
        a, f = ours[window], floor[window]
        top = ", ".join(
            f"`{op}` x{row['count']} ({1000 * row['seconds']:.0f} ms)"
            for op, row in list(a["operations"].items())[:4]
        )
        lines.append(
            f"| {window} | {a['seconds']:.2f} s ({a['requests']} requests, "
            f"{a['request_seconds']:.2f} s of them) | {f['seconds']:.2f} s ({f['requests']} "
            f"requests, {f['request_seconds']:.2f} s) | {top or 'no request'} |"
        )
    alone = b.get("agent_code_alone_s")
    lines += [
        "",
        f"Creating the runs one after another is {100 * b['creating_share']:.0f}% of "
        f"agentmill's zero-latency wall here, and the floor pays the same. While the runs "
        f"exist, agentmill spends {b['running_ms_per_agent']:.1f} ms per agent against the "
        f"floor's {b['floor_running_ms_per_agent']:.1f} ms"
        + (
            ""
            if alone is None
            else f" (the agent code alone, plain asyncio: {1000 * alone / b['agents']:.1f} ms)"
        )
        + ".",
        "",
    ]
    return lines


def creating(run: dict[str, Any], key: str = "creating") -> dict[str, Any]:
    """`{key}_s`: how long a run spent creating its flow runs before any agent started;
    `{key}_503`: how many of its requests meanwhile were answered 503 (None: no such window)."""
    split = split_wall(run)
    window = split["creating"] if split else {"seconds": None, "http_503": None}
    return {f"{key}_s": window["seconds"], f"{key}_503": window["http_503"]}


def _locked(answered_503: int | None) -> str:
    if not answered_503:
        return ""
    return (
        f', {answered_503} of its requests answered 503 ("database is locked") and retried '
        "after Prefect's client back-off of 2 s or more"
    )


def in_the_way(row: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """For each of issue 16's goals a server missed: what stands in the way, and its cost.

    `row` is one server's row of results.json with its `targets`. Each entry
    says which operation stands in the way (`what`), what it costs in the
    goal's own unit (`cost`), and the figure the goal would read without it
    (`without`); a goal that is met, or whose cost is unknown, has no entry.
    """
    out: dict[str, dict[str, Any]] = {}
    targets = row.get("targets", {})
    if targets.get("wall_vs_critical_path", {}).get("met") is False:
        groups = [row, *row.get("scaling", [])]
        worst = max(groups, key=lambda g: g.get("wall_over_critical") or 0.0)
        created, cp = worst.get("creating_s"), worst.get("critical_path_s")
        if created is not None and cp:
            out["wall_vs_critical_path"] = _creation(
                created,
                worst.get("creating_503"),
                worst["agentmill_s"],
                cp,
                " before any agent starts (Prefect's `POST /flow_runs/`, `set_state` and "
                f"`POST /task_runs/` per run): {created:.2f} s at {worst['roles']} roles",
            )
    b = row.get("zero_latency_breakdown")
    if targets.get("overhead_ms_per_task", {}).get("met") is False and b:
        n, floor_ms = b["agents"], row["floor_ms_per_task"]
        floor_creating_ms = 1000 * b["floor"]["creating"]["seconds"] / n
        alone = b.get("agent_code_alone_s")
        alone_text = (
            ""
            if alone is None
            else f"; the agents' own work with no Prefect at all (plain asyncio) adds "
            f"{1000 * alone / n:.1f} ms, so the two leave agentmill "
            f"{row['overhead_ms_per_task'] - floor_ms - 1000 * alone / n:.1f} ms per agent"
        )
        out["overhead_ms_per_task"] = {
            "what": (
                f"Prefect's floor (the same {b['floor']['flow_runs']} flow runs and {n} tasks, "
                f"doing nothing): {floor_ms:.1f} ms per agent, {floor_creating_ms:.1f} of it "
                f"creating the runs" + alone_text
            ),
            "cost": floor_ms,
            "without": round(row["overhead_ms_per_task"] - floor_ms, 1),
        }
    created = row.get("cached_rerun_creating_s")
    if targets.get("cached_rerun_share_of_first", {}).get("met") is False and created:
        out["cached_rerun_share_of_first"] = _creation(
            created,
            row.get("cached_rerun_creating_503"),
            row["cached_rerun_s"],
            row["agentmill_s"],
            f": {created:.2f} s of the {row['cached_rerun_s']:.2f} s rerun (every agent is a "
            "cached task run; no model request)",
        )
    return out


def _creation(
    created: float, answered_503: int | None, wall: float, per: float, where: str
) -> dict[str, Any]:
    """The creation window as what stands in the way of a figure that is `wall / per`."""
    return {
        "what": "creating the build's flow run and its phase subflows one after another"
        + where
        + _locked(answered_503),
        "cost": round(created / per, 3),
        "without": round((wall - created) / per, 3),
    }
