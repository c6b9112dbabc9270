"""The run report: per-agent figures, the critical path, and how close the run got to it.

`critical_path_s` is the longest chain of measured agent durations through the
dependency graph: no schedule can beat it, so `parallel_efficiency`
(critical path / wall) says how much time orchestration left on the table.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from tasks.agents.output import Refusal


class AgentReport(BaseModel):
    role: str
    phase: str
    model: str
    cached: bool
    status: str
    duration_s: float
    started_s: float = Field(description="Seconds from the build's start.")
    tokens: int
    cost_usd: float
    requests: int = Field(description="Model requests made by this run (0 when cached).")
    files: int
    refused: int = Field(default=0, description="Tool calls of this agent the run refused.")
    refusals: list[Refusal] = Field(
        default_factory=list, description="Each refused call: tool, path and reason."
    )
    error: str | None = None


class CommitRecord(BaseModel):
    phase: str
    sha: str
    agents: list[str]


class RunMetrics(BaseModel):
    wall_s: float
    sum_agent_s: float
    critical_path_s: float
    critical_path: list[str]
    parallel_efficiency: float
    model_requests: int
    commits: int
    cost_usd: float
    tokens: int
    cached_agents: int
    slowest: list[str]
    refused_calls: int = Field(default=0, description="Tool calls refused, over all agents.")


class RunReport(BaseModel):
    run_id: str
    idea: str
    provider: str
    status: str
    base_tree: str
    agents: list[AgentReport]
    commits: list[CommitRecord]
    metrics: RunMetrics


def critical_path(
    durations: dict[str, float], deps: dict[str, list[str]], order: list[str]
) -> tuple[float, list[str]]:
    """Longest path by summed duration; `order` must be topological."""
    finish: dict[str, float] = {}
    via: dict[str, str | None] = {}
    for role in order:
        if role not in durations:
            continue
        best, parent = 0.0, None
        for dep in deps.get(role, []):
            if finish.get(dep, 0.0) > best:
                best, parent = finish[dep], dep
        finish[role] = best + durations[role]
        via[role] = parent
    if not finish:
        return 0.0, []
    end = max(finish, key=lambda r: finish[r])
    path: list[str] = []
    node: str | None = end
    while node is not None:
        path.append(node)
        node = via[node]
    return finish[end], path[::-1]


def summarise(
    agents: list[AgentReport],
    commits: list[CommitRecord],
    deps: dict[str, list[str]],
    order: list[str],
    wall_s: float,
) -> RunMetrics:
    durations = {a.role: a.duration_s for a in agents if a.status == "done"}
    cp, cp_roles = critical_path(durations, deps, order)
    slowest = sorted(agents, key=lambda a: a.duration_s, reverse=True)[:5]
    return RunMetrics(
        wall_s=round(wall_s, 4),
        sum_agent_s=round(sum(durations.values()), 4),
        critical_path_s=round(cp, 4),
        critical_path=cp_roles,
        parallel_efficiency=round(cp / wall_s, 4) if wall_s > 0 else 0.0,
        model_requests=sum(a.requests for a in agents),
        commits=len(commits),
        cost_usd=round(sum(a.cost_usd for a in agents if not a.cached), 6),
        tokens=sum(a.tokens for a in agents if not a.cached),
        cached_agents=sum(1 for a in agents if a.cached),
        slowest=[a.role for a in slowest],
        refused_calls=sum(a.refused for a in agents),
    )


def report_markdown(report: RunReport) -> str:
    m = report.metrics
    offline = report.provider == "offline"
    lines = [
        f"# agentmill run `{report.run_id}`: {report.status}",
        "",
        "**OFFLINE MODEL: placeholder documents, not a real app.**" if offline else "",
        f"Idea: {report.idea[:300]}",
        "",
        "| wall s | critical path s | efficiency | agents s (sum) | requests | commits "
        "| cost USD | cached |",
        "|---|---|---|---|---|---|---|---|",
        f"| {m.wall_s:.2f} | {m.critical_path_s:.2f} | {m.parallel_efficiency:.2f} | "
        f"{m.sum_agent_s:.2f} | {m.model_requests} | {m.commits} | {m.cost_usd:.4f} | "
        f"{m.cached_agents}/{len(report.agents)} |",
        "",
        f"Critical path: {' → '.join(m.critical_path) or '-'}",
        "",
        "| role | phase | model | cached | status | duration s | tokens | cost USD | refused |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for a in report.agents:
        lines.append(
            f"| {a.role} | {a.phase} | {a.model} | {'yes' if a.cached else 'no'} | {a.status} | "
            f"{a.duration_s:.2f} | {a.tokens} | {a.cost_usd:.4f} | {a.refused} |"
        )
    lines += _refusal_lines(report)
    lines += ["", "| phase | commit | agents |", "|---|---|---|"]
    lines += [f"| {c.phase} | `{c.sha[:12]}` | {', '.join(c.agents)} |" for c in report.commits]
    return "\n".join(lines) + "\n"


def _refusal_lines(report: RunReport) -> list[str]:
    """The refused tool calls, agent by agent: an agent whose writes were refused says so."""
    refused = [a for a in report.agents if a.refusals]
    if not refused:
        return []
    total = sum(a.refused for a in report.agents)
    lines = ["", f"**{total} tool calls refused** (the model was told why, and could correct them)"]
    lines += ["", "| role | tool | path | reason |", "|---|---|---|---|"]
    for a in refused:
        lines += [
            f"| {a.role} | {r.tool} | `{_cell(r.path)}` | {_cell(r.reason)} |" for r in a.refusals
        ]
    return lines


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").replace("`", "'")[:200]
