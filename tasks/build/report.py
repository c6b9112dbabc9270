"""The run report: per-agent figures, the critical path, and how close the run got to it.

`critical_path_s` is the longest chain of measured agent durations through the
dependency graph: no schedule can beat it, so `parallel_efficiency`
(critical path / wall) says how much time orchestration left on the table.
The prompt-cache ledger (`cache`) says, per agent, per model and for the
run, what the cache read and wrote and what that saved against the same run
with no caching.
"""

from __future__ import annotations

from collections import defaultdict

from pydantic import BaseModel, Field

from tasks.agents.output import Refusal
from tasks.build.verify import Verification
from tasks.model.ledger import CacheLedger


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
    cache: CacheLedger = Field(
        default_factory=CacheLedger, description="This run's prompt caching (empty when cached)."
    )


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
    cache: CacheLedger = Field(
        default_factory=CacheLedger,
        description="The run's prompt caching: every request, warm-ups included.",
    )
    cache_by_model: dict[str, CacheLedger] = Field(default_factory=dict)
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
    verification: Verification = Field(default_factory=Verification)


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
    warmups: dict[str, CacheLedger] | None = None,
) -> RunMetrics:
    """The run's figures; `warmups` is the warm-up requests' ledger per model."""
    durations = {a.role: a.duration_s for a in agents if a.status == "done"}
    cp, cp_roles = critical_path(durations, deps, order)
    slowest = sorted(agents, key=lambda a: a.duration_s, reverse=True)[:5]
    cache, by_model = _cache_ledgers(agents, warmups or {})
    return RunMetrics(
        wall_s=round(wall_s, 4),
        sum_agent_s=round(sum(durations.values()), 4),
        critical_path_s=round(cp, 4),
        critical_path=cp_roles,
        parallel_efficiency=round(cp / wall_s, 4) if wall_s > 0 else 0.0,
        # Warm-ups are model requests the run paid for, not any agent's.
        model_requests=sum(a.requests for a in agents) + cache.warmup_requests,
        commits=len(commits),
        cost_usd=round(sum(a.cost_usd for a in agents if not a.cached) + cache.warmup_cost_usd, 6),
        tokens=sum(a.tokens for a in agents if not a.cached),
        cached_agents=sum(1 for a in agents if a.cached),
        slowest=[a.role for a in slowest],
        cache=cache,
        cache_by_model=by_model,
        refused_calls=sum(a.refused for a in agents),
    )


def _cache_ledgers(
    agents: list[AgentReport], warmups: dict[str, CacheLedger]
) -> tuple[CacheLedger, dict[str, CacheLedger]]:
    """The run's prompt-cache ledger, and one per model."""
    by_model: defaultdict[str, list[CacheLedger]] = defaultdict(list)
    for a in agents:
        if a.cache.requests:
            by_model[a.model].append(a.cache)
    for model, ledger in warmups.items():
        by_model[model].append(ledger)
    models = {model: CacheLedger.total(parts) for model, parts in sorted(by_model.items())}
    return CacheLedger.total(models.values()), models


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
        *_cache_markdown(m),
        "| role | phase | model | cached | status | duration s | tokens | cost USD "
        "| cache hit | saved USD | refused |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for a in report.agents:
        lines.append(
            f"| {a.role} | {a.phase} | {a.model} | {'yes' if a.cached else 'no'} | {a.status} | "
            f"{a.duration_s:.2f} | {a.tokens} | {a.cost_usd:.4f} | {a.cache.hit_ratio:.0%} | "
            f"{a.cache.saved_usd:.4f} | {a.refused} |"
        )
    lines += _refusal_lines(report)
    lines += verification_markdown(report.verification)
    lines += ["", "| phase | commit | agents |", "|---|---|---|"]
    lines += [f"| {c.phase} | `{c.sha[:12]}` | {', '.join(c.agents)} |" for c in report.commits]
    return "\n".join(lines) + "\n"


def verification_markdown(verification: Verification) -> list[str]:
    """The checks as a table: round, phase, check, status, seconds, sandbox, who fixed."""
    lines = ["", f"**Verification: {verification.status}** ({verification.line()})", ""]
    if not verification.rounds:
        return lines
    lines += [
        "| phase | round | check | status | exit | seconds | sandbox | fixed by |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in verification.rounds:
        for c in r.checks:
            code = "-" if c.exit_code is None else str(c.exit_code)
            lines.append(
                f"| {r.phase} | {r.round} | {c.name} | {c.status} | {code} | "
                f"{c.duration_s:.2f} | {c.sandbox} | {', '.join(r.fixed_by) or '-'} |"
            )
    return lines


def _cache_markdown(m: RunMetrics) -> list[str]:
    """The prompt-cache table: the run, each model, and the warm-ups within them."""
    c = m.cache
    lines = [
        f"Prompt cache: {c.hit_ratio:.0%} of prompt tokens read from the cache; "
        f"${c.cost_usd:.4f} against ${c.uncached_cost_usd:.4f} with no caching "
        f"(saved ${c.saved_usd:.4f}); {c.warmup_requests} warm-up request(s), "
        f"${c.warmup_cost_usd:.4f}.",
        "",
        "| prompt cache | requests | input | cache read | cache write | hit | cost USD "
        "| uncached USD | saved USD |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in [("run", c), *m.cache_by_model.items()]:
        lines.append(
            f"| {name} | {row.requests} | {row.input_tokens} | {row.cache_read_tokens} | "
            f"{row.cache_write_tokens} | {row.hit_ratio:.0%} | {row.cost_usd:.4f} | "
            f"{row.uncached_cost_usd:.4f} | {row.saved_usd:.4f} |"
        )
    return [*lines, ""]


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
