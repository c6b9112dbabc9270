"""results.md (a table a person reads at a glance) and the timeline picture of the agentmill run."""

from __future__ import annotations

from typing import Any

from benchmarks.servers_report import render_servers
from tasks.build.offline_script import REQUESTS_PER_AGENT as PER_AGENT
from tasks.build.planning import Plan
from tasks.build.report import AgentReport
from tasks.build.timeline import render_timeline


def _samples(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def _met(met: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "n/a"}[met]


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} MB"


def render_markdown(r: dict[str, Any]) -> str:
    lines: list[str] = []
    lines += _header(r)
    lines += render_servers(r)
    lines += _server(r)
    lines += _glance(r)
    lines += _schedules(r)
    lines += _overhead(r)
    lines += _reruns(r)
    lines += _scaling(r)
    lines += _where_the_time_goes(r)
    lines += _verification(r)
    return "\n".join(lines).rstrip() + "\n"


def _header(r: dict[str, Any]) -> list[str]:
    m = r["machine"]
    return [
        "# agentmill benchmark",
        "",
        f"Measured {r['date']} on {m['cpus']} cores ({m['cpu_model']}), {m['memory_gb']} GB, "
        f"{m['os']}, Python {m['python']}, prefect {m['prefect']}, anthropic {m['anthropic']}. "
        f"1-minute load average {m.get('load_average_1m_at_start')} at the start and "
        f"{m['load_average_1m_at_end']} at the end: other work shared the machine, so "
        "absolute times carry noise; the comparisons ran back to back in one process. "
        f"Seed {r['seed']}, latency scale {r['latency_scale']}. Reproduce with "
        f"`python -m benchmarks.run` (this run took {r.get('benchmark_s', 'n/a')} s).",
        "",
    ]


def _glance(r: dict[str, Any]) -> list[str]:
    t = r["targets"]
    n = r["roles"]
    z = r["zero_latency"]
    scaling = {s["roles"]: s for s in r["scaling"]}
    rss_40 = r["peak_rss_mb_at_40_roles"]
    return [
        f"## At a glance ({r['headline_server']} server)",
        "",
        "| measure | agentmill | goal | met |",
        "|---|---|---|---|",
        f"| wall / critical path ({n} roles) | {r['ratio_to_critical_path']:.2f} "
        f"({r['agentmill_s']:.2f} s against {r['critical_path_s']:.2f} s) | ≤ 1.10 | "
        f"{_met(t['wall_vs_critical_path']['met'])} |",
        f"| faster than level barriers | {r['faster_than_level_barriers']:.0%} "
        f"({r['agentmill_s']:.2f} s against {r['level_barrier_s']:.2f} s) | ≥ 15% | "
        f"{_met(t['faster_than_level_barriers']['met'])} |",
        f"| faster than sequential | {r['speedup_vs_sequential']:.2f}x "
        f"({r['sequential_s']:.2f} s) | | |",
        f"| orchestration overhead per agent task (zero latency) | "
        f"{r['overhead_ms_per_task']:.1f} ms (Prefect's floor for this shape: "
        f"{z['floor_ms_per_task']:.1f} ms) | ≤ 60 ms | {_met(t['overhead_ms_per_task']['met'])} |",
        f"| fully cached rerun: model requests | {r['cached_rerun_requests']} | 0 | "
        f"{_met(t['cached_rerun_requests']['met'])} |",
        f"| fully cached rerun: wall / first run | {r['cached_rerun_share_of_first']:.1%} "
        f"({r['cached_rerun_s']:.2f} s against {r['cached_rerun_first_run_s']:.2f} s) | ≤ 10% | "
        f"{_met(t['cached_rerun_share_of_first']['met'])} |",
        f"| incremental rerun after changing {r['incremental_changed_role']}: requests | "
        f"{r['incremental_requests']} ({len(r['incremental_roles'])} roles) | "
        f"{r['incremental_expected_requests']} ({len(r['incremental_expected_roles'])} roles) | "
        f"{_met(r['incremental_roles'] == r['incremental_expected_roles'] and r['incremental_requests'] == r['incremental_expected_requests'])} |",  # noqa: E501
        f"| commits | {r['commits']} (one per phase) | | |",
        f"| context injected per agent (the pointer message) | "
        f"{r['context_tokens_per_agent']:.1f} tokens (at most {r['context_tokens_max']}) | | |",
        f"| peak RSS of the flow process, {n} / 40 / 80 roles | {_mb(r['peak_rss_mb'])} / "
        f"{_mb(rss_40)} / {_mb(scaling.get(80, {}).get('peak_rss_mb'))} | ≤ 300 MB at 40 | "
        f"{_met(t['peak_rss_mb_at_40_roles']['met'])} |",
        f"| peak RSS of the Prefect server (own process, not counted above) | "
        f"{_mb(r['prefect_server'].get('peak_rss_mb'))} | | |",
        "",
    ]


def _schedules(r: dict[str, Any]) -> list[str]:
    cp = r["critical_path_s"]
    parts = r["wall_parts"]
    head = r["level_barrier_headroom"]

    def row(name: str, label: str, wall: float, vs: str) -> str:
        p = parts.get(name, {})
        split = (
            f"{p['before_first_request_s']:.2f} / {p['beyond_critical_path_s']:.2f} / "
            f"{p['after_last_reply_s']:.2f}"
            if p
            else ""
        )
        return f"| {label} | {wall:.2f} | {wall / cp:.2f} | {split} | {vs} |"

    return [
        f"## Three schedules, the same latencies ({r['roles']} roles)",
        "",
        "All run the same agent code (`run_tool_loop`) against one fake Messages API on "
        "loopback (real HTTP, SSE, the Anthropic SDK) that serves each request a latency "
        "drawn from (seed, role, step) for its model's tier: opus 0.6-1.2 s, sonnet "
        "0.2-0.45 s, haiku 0.03-0.1 s. The critical path is the longest path through the "
        "graph of the latencies the fake served (per agent, the sum over its requests). "
        "The split column divides the wall time into the time before the first model "
        "request, the time beyond the critical path while requests flow, and the time "
        "after the last reply.",
        "",
        "| schedule | wall s | / critical path | before / beyond / after s | agentmill is |",
        "|---|---|---|---|---|",
        row(
            "sequential",
            "sequential, plain asyncio",
            r["sequential_s"],
            f"{r['speedup_vs_sequential']:.2f}x faster",
        ),
        row(
            "level_barriers",
            "level barriers, plain asyncio",
            r["level_barrier_s"],
            f"{r['faster_than_level_barriers']:.0%} faster",
        ),
        row(
            "asyncio_dataflow",
            "dataflow, plain asyncio (agentmill's schedule without Prefect)",
            r["asyncio_dataflow_s"],
            "",
        ),
        row("agentmill", "**agentmill** (`abuild_app`, as the CLI runs it)", r["agentmill_s"], ""),
        f"| critical path | {cp:.2f} | 1.00 | | |",
        "",
        f"Critical path: {' → '.join(r['critical_path'])}. All schedules were served the same "
        f"latencies (their critical paths differ by {r['critical_path_spread_s']:.6f} s). "
        f"agentmill's wall is the whole flow call: the flow run, "
        f"{len(r['team_shape']['roles_per_phase'])} phase subflows, {r['roles']} agent tasks "
        f"with cache keys and persisted results, {r['commits']} commits, manifest and report "
        f"({r['agentmill_build_s']:.2f} s of it between the first subflow's start and the "
        f"last commit). agentmill's figure is the median of "
        f"{len(r['agentmill_samples_s'])} cold runs ({_samples(r['agentmill_samples_s'])} s). "
        f"{r['model_requests']} model requests, "
        f"{r['tokens']['input']} input and {r['tokens']['output']} output tokens; at most in "
        "flight at once: "
        + ", ".join(f"{v} {t}" for t, v in sorted(r["peak_in_flight_by_tier"].items()))
        + ".",
        "",
        f"How much a perfect schedule can gain over level barriers is set by the graph and "
        f"the draw: from the latencies alone, the critical path is {head['seed']:.1%} shorter "
        f"than an ideal level-barrier run for this seed ({head['mean']:.1%} on average over "
        f"seeds 1-{head['seeds']}, {head['min']:.1%} to {head['max']:.1%}). So on this team "
        "the 15% target leaves agentmill almost nothing above the critical path.",
        "",
        "![timeline of the agentmill run](timeline.svg)",
        "",
    ]


def _overhead(r: dict[str, Any]) -> list[str]:
    z = r["zero_latency"]
    s = r["startup_excluded"]
    n = r["roles"]
    phases = len(r["team_shape"]["roles_per_phase"])
    server_start = s["prefect_server_start_s"]
    return [
        "## Orchestration overhead (zero latency)",
        "",
        "The same team against the fake with no latency: the wall time is all overhead, "
        "divided by the number of agents. Each row but the last two is the median of "
        f"{len(z['agentmill_samples_s'])} runs (async {_samples(z['agentmill_samples_s'])} s; "
        f"sync {_samples(z['agentmill_sync_flow_samples_s'])} s; "
        f"floor {_samples(z['prefect_floor_samples_s'])} s).",
        "",
        "| run | wall s | ms per agent |",
        "|---|---|---|",
        f"| **agentmill**, `abuild_app` (async flow; the CLI) | {z['agentmill_s']:.3f} | "
        f"**{r['overhead_ms_per_task']:.1f}** |",
        f"| agentmill, `build_app` (sync flow; plain Python) | {z['agentmill_sync_flow_s']:.3f} | "
        f"{z['sync_flow_ms_per_task']:.1f} |",
        f"| Prefect's floor: an async flow, {phases} subflows and {n} cached tasks that do "
        f"nothing, same dependencies | {z['prefect_floor_s']:.3f} | {z['floor_ms_per_task']:.1f} |",
        f"| the agent code alone: plain asyncio dataflow, same requests | "
        f"{z['asyncio_dataflow_s']:.3f} | {z['asyncio_ms_per_task']:.1f} |",
        f"| an empty async flow / an empty sync flow | {z['empty_async_flow_s']:.3f} / "
        f"{z['empty_sync_flow_s']:.3f} | |",
        "",
        "Excluded, and said so: starting the Prefect server "
        f"({'n/a' if server_start is None else f'{server_start:.1f} s'}, its own process), "
        f"importing agentmill and Prefect ({s['process_import_s']:.2f} s) and the first flow "
        f"call of the process ({s['first_flow_call_s']:.2f} s: Prefect's one-time client, "
        "events and logging set-up).",
        "",
    ]


def _reruns(r: dict[str, Any]) -> list[str]:
    n = r["roles"]
    return [
        "## Reruns",
        "",
        "In their own workdir and result storage (a fresh idea string too), so nothing "
        "leaks from the runs above; the cached and incremental runs reuse the first run's. "
        "The first run's wall is the median of agentmill's cold runs (this first run is one "
        f"of them); the cached rerun's, the median of {len(r['cached_rerun_samples_s'])} "
        f"({_samples(r['cached_rerun_samples_s'])} s), none of which made a model request.",
        "",
        "| run | wall s | model requests | expected |",
        "|---|---|---|---|",
        f"| first run, cold cache | {r['cached_rerun_first_run_s']:.2f} | {PER_AGENT * n} "
        f"| {PER_AGENT * n} |",
        f"| fully cached rerun | {r['cached_rerun_s']:.2f} "
        f"({r['cached_rerun_share_of_first']:.1%} of the first) | "
        f"{r['cached_rerun_requests']} | 0 |",
        f"| after changing {r['incremental_changed_role']} | {r['incremental_rerun_s']:.2f} | "
        f"{r['incremental_requests']} | {r['incremental_expected_requests']} |",
        "",
        f"Rerun after the change: {', '.join(r['incremental_roles']) or 'none'}. Expected, "
        f"{r['incremental_changed_role']} and its descendants at 3 requests each: "
        f"{', '.join(r['incremental_expected_roles'])}.",
        "",
    ]


def _scaling(r: dict[str, Any]) -> list[str]:
    lines = [
        "## Scaling",
        "",
        "Generated teams with the default team's shape (roles per phase, tracks of a lead "
        "and workers, tier mix 3:11:18, fan-in), each size in a fresh process so its peak "
        "RSS is its own; the 32-role row is the default team above. agentmill, its "
        "overhead and the floor are medians of repeated runs, as above.",
        "",
        "| roles | agentmill s | critical path s | / critical path | level barriers s "
        "| faster than level (at most) | overhead ms/agent | Prefect floor ms/agent "
        "| peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in r["scaling_detail"]:
        lines.append(
            f"| {s['roles']} | {s['agentmill_s']:.2f} | {s['critical_path_s']:.2f} | "
            f"{s['ratio_to_critical_path']:.2f} | {s['level_barrier_s']:.2f} | "
            f"{s['faster_than_level_barriers']:.0%} ({s['level_barrier_headroom']['seed']:.0%}) | "
            f"{s['overhead_ms_per_task']:.1f} | {s['floor_ms_per_task']:.1f} | "
            f"{s['peak_rss_mb']:.0f} |"
        )
    lines += [
        "",
        "(at most): how much faster than ideal level barriers the critical path itself is "
        "for that team and seed, from the latencies alone. The small generated teams are "
        "nearly chains, so dataflow has little to win there and Prefect's fixed cost shows.",
    ]
    return [*lines, ""]


def _server(r: dict[str, Any]) -> list[str]:
    server = r["prefect_server"]
    where = (
        "an existing Prefect API (`--api-url`), whose services are its own"
        if server.get("external")
        else f"{server['label']}, started and stopped by the harness"
    )
    return [
        "## The headline server",
        "",
        f'The sections from "At a glance" on describe the runs on the '
        f"**{r['headline_server']}** server: {where}. Services on: "
        + ", ".join(server["services_on"])
        + f". It answered {server.get('retryable_errors', 'n/a')} requests with 503 over the "
        "benchmark.",
        "",
    ]


def _where_the_time_goes(r: dict[str, Any]) -> list[str]:
    z = r["zero_latency"]
    a = r["wall_parts"].get("agentmill", {})
    d = r["wall_parts"].get("asyncio_dataflow", {})
    if not a or not d:
        return []
    path = len(r["critical_path"])
    extra = a["beyond_critical_path_s"] - d["beyond_critical_path_s"]
    return [
        "## Where the time goes, and what is Prefect's floor",
        "",
        f"- Before the first model request agentmill spends {a['before_first_request_s']:.2f} s "
        f"(plain asyncio: {d['before_first_request_s']:.2f} s): creating the flow run and the "
        f"first phase subflow on the API. An empty async flow call alone takes "
        f"{z['empty_async_flow_s']:.2f} s here.",
        f"- While requests flow it spends {a['beyond_critical_path_s']:.2f} s beyond the "
        f"critical path (plain asyncio: {d['beyond_critical_path_s']:.2f} s, the SDK, HTTP and "
        f"tool calls): {extra:.2f} s more over the {path} agents of the path, about "
        f"{1000 * extra / path:.0f} ms per agent for a Prefect task run (state events, cache "
        "lookup, persisted result) and the scheduler.",
        f"- After the last reply it spends {a['after_last_reply_s']:.2f} s (plain asyncio: "
        f"{d['after_last_reply_s']:.2f} s): the last agent's task end, the last phase's "
        "commit, the subflows' and the flow's final states, the report.",
        f"- Prefect's floor for this shape, measured: {z['floor_ms_per_task']:.1f} ms per "
        f"agent at {r['roles']} roles for an async flow, its phase subflows and cached tasks "
        f"that do nothing (an empty async flow call alone takes {z['empty_async_flow_s']:.2f} s; "
        "subflows are created one after another). The agent code alone costs "
        f"{z['asyncio_ms_per_task']:.1f} ms per agent; agentmill's own share is the rest.",
        f"- A sync flow joins its heartbeat thread, which sleeps in whole seconds, when it "
        f"ends: an empty sync flow takes {z['empty_sync_flow_s']:.2f} s against "
        f"{z['empty_async_flow_s']:.2f} s for an async one. `build_app(...)` from sync code "
        "pays this (up to a second per build); the CLI and `await abuild_app(...)` do not.",
        "- On SQLite the server creates a flow run (and the task run that stands for a "
        "subflow in its parent) in a transaction that reads, then writes; any write landing in "
        'between fails it with "database is locked", and the client retries after 2 s, 4, 8, '
        "16 and 32 s. agentmill creates every phase subflow, one after another, before any "
        "agent runs and writes its progress artifact at most once a second and never during "
        "a creation, so no write of its own races one; what can still collide is the "
        "server's own work (the task-run recorder and event persister writing what earlier "
        "runs sent) and Prefect's log batches. The servers section counts those.",
        "",
        "Fixed in agentmill for this benchmark: git blobs written in-process (GitPython's "
        "default forked a `git` per blob), commits in a worker thread, identical files not "
        "rewritten and not restaged on reruns, agent jobs passed to Prefect quoted (it "
        "walked every upstream output of every job), every phase subflow created before the "
        "first agent runs (a phase subflow ends with its commit; before, subflows were "
        "created while agents ran and their ends were held, so that on a default server "
        "about four creations per build met a 503 and waited 2 s each), the progress "
        "artifact written a few times per build instead of once per agent, the model client "
        "built while the first subflow is created, and an async entry point (`abuild_app`) "
        "that the CLI uses.",
        "",
    ]


def _verification(r: dict[str, Any]) -> list[str]:
    """What verifying a build costs: sandbox start-up per command, and the checks' share."""
    v = r.get("verification")
    if not v:
        return []
    start = v["sandbox_start_ms"]
    bwrap = "not available" if start.get("bwrap") is None else f"{start['bwrap']:.1f} ms"
    wall = v["build_wall_s"]
    return [
        "",
        "## Verification",
        "",
        "`python -m benchmarks.verification` (run by the harness against the same server).",
        "",
        "| measure | result |",
        "|---|---|",
        f"| start-up of one command, `true` (median of 15) | plain subprocess "
        f"{start['subprocess']:.1f} ms · fallback sandbox {start['process']:.1f} ms · "
        f"bubblewrap {bwrap} |",
        f"| default team offline, verification on / off | {wall['verify']:.2f} s / "
        f"{wall['no_verify']:.2f} s ({v['rounds']} rounds, fixes by "
        f"{', '.join(v['fix_agents']) or 'nobody'}, verdict {v['verdict']}) |",
        f"| the checks nodes' time, share of the verified build's wall | {v['checks_s']:.2f} s, "
        f"{v['share_of_wall']:.0%} |",
        f"| agents that ran while a phase's checks did | "
        f"{len(v['agents_running_during_checks'])}: "
        f"{', '.join(v['agents_running_during_checks']) or 'none'} |",
        "",
        "The checks are on the critical path only for the agents that read their verdict "
        "(the quality reviewers, the unit tests, the release); the others go on while they run.",
    ]


def render_timeline_svg(
    agents: list[dict[str, Any]], plan: Plan, critical: list[str], r: dict[str, Any]
) -> str:
    reports = [AgentReport.model_validate(a) for a in agents]
    title = (
        f"agentmill, {r['roles']} roles, seed {r['seed']}: wall {r['agentmill_s']:.2f} s, "
        f"critical path {r['critical_path_s']:.2f} s (served latencies, outlined)"
    )
    return render_timeline(reports, [p.name for p in plan.phases], critical, title)
