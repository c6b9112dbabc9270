"""results.md's part about the servers: each configuration side by side, what it costs, spreads."""

from __future__ import annotations

from typing import Any

from benchmarks.breakdown import breakdown_markdown


def _s(value: float | None, digits: int = 2, unit: str = " s") -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


def _met(met: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "n/a"}[met]


def _pct(fraction: float) -> str:
    return f"{100 * fraction:.0f}%"


def render_servers(r: dict[str, Any]) -> list[str]:
    servers: dict[str, dict[str, Any]] = r["servers"]
    sizes = " / ".join(str(x["roles"]) for x in r["scaling"] if x["roles"] != r["roles"])
    sizes = sizes or "no other sizes"
    lines = [
        "## The servers people run",
        "",
        f"The same {r['roles']}-role team, fake and latencies on each Prefect server "
        "configuration: the **embedded** server the command line starts (no "
        "`PREFECT_API_URL`), a plain **`prefect server start`** (every service on; what a "
        "Prefect UI user runs), the same on **PostgreSQL** (a throwaway cluster; what a "
        "fleet runs) and, labelled as such, the **tuned** server of the earlier "
        "benchmark (8 of 10 services off: task runs and events are not recorded, so the UI "
        f"shows neither). Medians of {r['samples']} runs each; the README's first command "
        "is timed in fresh processes. Between runs the harness waits until the server has "
        "recorded the previous one (its task runs and final event), as one person's next "
        "build would find it; that wait is not in any figure.",
        "",
        f"| server | wall / critical path: {r['roles']} roles (" + sizes + ") | ms per agent, "
        "zero latency (Prefect's floor) | fully cached rerun | 503s (client back-offs) "
        "| command: start → first model request / → summary |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in servers.items():
        lines.append(_row(name, s))
    lines += [
        "",
        "Fully cached rerun: the whole call, its share of the first run's wall, and the model "
        "requests it made. 503s: what the server answered 503 over every run of that "
        'configuration (on SQLite, "database is locked"); client back-offs: the waits '
        "Prefect's client scheduled before retrying (2 s, then 4, 8, 16, 32 s).",
        "",
    ]
    lines += _goals(servers)
    lines += _costs(servers)
    lines += _breakdowns(servers)
    lines += _spreads(servers)
    return lines


def _row(name: str, s: dict[str, Any]) -> str:
    if s.get("not_measured"):  # e.g. PostgreSQL is not installed where the benchmark ran
        return f"| **{name}**: {s['label']} | not measured: {s['not_measured']} | | | | |"
    scaling = " / ".join(f"{x['wall_over_critical']:.2f}" for x in s["scaling"]) or "not run"
    b = s["client_backoffs"]
    fresh = ""
    if "start_to_summary_fresh_db_s" in s:
        fresh = (
            f" (fresh home: {_s(s.get('start_to_first_request_fresh_db_s'), 1)} / "
            f"{_s(s.get('start_to_summary_fresh_db_s'), 1)})"
        )
    http_503 = "n/a" if s["http_503"] is None else str(s["http_503"])
    return (
        f"| **{name}**: {s['label']} | {s['wall_over_critical']:.2f} ({scaling}) | "
        f"{s['overhead_ms_per_task']:.1f} ({s['floor_ms_per_task']:.1f}) | "
        f"{s['cached_rerun_s']:.2f} s, {_pct(s['cached_rerun_share_of_first'])}, "
        f"{s['cached_rerun_requests']} requests | "
        f"{http_503} ({b['count']} waits, {b['seconds']:.1f} s in {b['runs_with_backoffs']} of "
        f"{b['runs']} runs) | "
        f"{_s(s['start_to_first_request_s'], 1)} / {_s(s['start_to_summary_s'], 1)}{fresh} |"
    )


_GOALS = {
    "wall_vs_critical_path": "wall / critical path, the worst of the team sizes (≤ 1.10)",
    "overhead_ms_per_task": "orchestration per agent at zero latency (≤ 60 ms)",
    "cached_rerun_share_of_first": "fully cached rerun / first run (≤ 10%)",
    "cached_rerun_s": "fully cached rerun in the flow (< 2 s)",
    "cached_rerun_requests": "fully cached rerun: model requests (0)",
    "cli_start_to_summary_s": "the README's command to its summary, database exists (< 20 s)",
    "cli_start_to_summary_fresh_db_s": "... on a fresh PREFECT_HOME (< 60 s)",
}


def _goals(servers: dict[str, dict[str, Any]]) -> list[str]:
    names = list(servers)
    lines = [
        "Goals (issue 16), per server:",
        "",
        "| goal | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for key, label in _GOALS.items():
        cells = []
        for name in names:
            if servers[name].get("not_measured"):
                cells.append("not measured")
                continue
            t = servers[name]["targets"].get(key)
            if t is None:
                cells.append("")
                continue
            value = t["value"]
            shown = "n/a" if value is None else f"{value:g}"
            cells.append(f"{shown}: {_met(t['met'])}")
        if any(cells):
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return [*lines, "", *_in_the_way(servers)]


def _in_the_way(servers: dict[str, dict[str, Any]]) -> list[str]:
    """Each goal a server missed: the operation in the way, its cost, the figure without it."""
    rows = [
        f"| {_GOALS[key]} | {name} | {entry['what']} | {entry['cost']:g} | {entry['without']:g} |"
        for key in _GOALS
        for name, s in servers.items()
        if (entry := s.get("in_the_way", {}).get(key))
    ]
    if not rows:
        return []
    return [
        "What stands in the way of each goal not met, measured in the same runs: its cost in "
        "the goal's own unit, and what the figure would be without it.",
        "",
        "| goal | server | what stands in the way | cost | the figure without it |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ]


def _costs(servers: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "### What each server costs a build, by Prefect operation",
        "",
        "The Prefect API requests of one zero-latency build (the median run), counted in the "
        "run's process: how many, their time in all, and how many were answered 503. No "
        "request is made per agent: an agent's task run reaches the server as events, and "
        "its result is a local file. What remains is Prefect's floor for the build's shape: "
        "a flow run and one subflow per phase, each created in a few requests one after "
        "another, plus the progress and report artifacts.",
        "",
    ]
    for name, s in servers.items():
        api = s.get("api_per_build_zero_latency") or {}
        if not api:
            continue
        total = sum(row["seconds"] for row in api.values())
        recorded = s.get("recorded_after_s")
        lines += [
            f"**{name}**: {s.get('api_requests_per_build')} requests, {total:.2f} s of "
            "request time in the build"
            + ("" if recorded is None else f"; the server recorded a run {recorded:.2f} s after")
            + ".",
            "",
            "| operation | requests | ms each | 503 |",
            "|---|---|---|---|",
        ]
        for op, row in list(api.items())[:12]:
            each = 1000 * row["seconds"] / row["count"]
            lines.append(f"| `{op}` | {row['count']} | {each:.1f} | {row['http_503']} |")
        lines.append("")
    return lines


def _breakdowns(servers: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "### Where the zero-latency seconds go",
        "",
        "The same zero-latency build (the median run) split at two moments its Prefect "
        "requests mark: when the last phase subflow is running (until then the flow run and "
        "its subflows are created one after another, before any agent starts: on SQLite a "
        'creation that overlaps a write fails with "database is locked"), and when the '
        "build's own final state is sent. Prefect's floor (the same flows and tasks doing "
        "nothing) split the same way; what agentmill adds is the difference.",
        "",
    ]
    for name, s in servers.items():
        if s.get("zero_latency_breakdown"):
            lines += breakdown_markdown(name, s["zero_latency_breakdown"])
    return lines


def _spreads(servers: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "### How far a rerun may differ",
        "",
        "Each median above comes with the runs around it. A rerun on the same machine lands "
        "within about the spread below (lowest and highest run against the median); on a "
        "machine shared with other work it can be slower still. Counts (requests, commits, "
        "cache hits) do not move; a 503 costs its run about 2 s whenever it happens, so a "
        "run that met one sits at the top of its spread.",
        "",
        "| server | wall / critical path | ms per agent, zero latency | fully cached rerun |",
        "|---|---|---|---|",
    ]
    for name, s in servers.items():
        cells = []
        for key in ("wall_over_critical", "overhead_ms_per_task", "cached_rerun_s"):
            sp = s["spread"].get(key)
            cells.append(
                "n/a"
                if sp is None
                else f"-{_pct(sp['below'])} / +{_pct(sp['above'])} ({sp['n']} runs)"
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return [*lines, ""]
