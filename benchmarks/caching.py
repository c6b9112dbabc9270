"""`python -m benchmarks.caching`: what prompt caching saves a build, on the rule-following fake.

The default team builds the same idea on the same project twice, once with
prompt caching off (no `cache_control` anywhere) and once as it ships, at
zero latency, against the fake Messages API whose cache follows the API's
rules (`tasks.model.caching`). The agents' conversations look like real
ones: each lists the tree, reads its brief and its dependencies' outputs,
then reads 3-10 files of 1-5k tokens, one to three a turn, before it writes
a document of 1-3k tokens and submits. Every figure is counted from what the
fake served and priced per request from `tasks.model.pricing`: it is a cost
ratio, so it means the same on a busy machine as on a quiet one.

A second measurement shows the warm-up: eight developers on one model that
start at the same moment on a cold shared prefix (with the warm-up, and
without it in a fresh process and a fresh cache).

    python -m benchmarks.caching                  # prints results as markdown, ~2 minutes
    python -m benchmarks.run                      # includes it as results.json "caching"
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from blocks.team import default_roles
from tasks.agents.prompts import BRIEF_PATH, TOOLS, shared_prompt
from tasks.agents.scripted import first_look, listing_of, not_an_agent, pick_reads, reply_with
from tasks.agents.scripted import turn_of as agent_turn
from tasks.model.caching import prompt_tokens
from tasks.model.pricing import Usage, cost_usd
from tasks.testing.messages_api import SeenRequest
from tasks.testing.repos import git

# Issue 12's goal: the cached build's input-token cost at most 40% of the uncached one's.
INPUT_COST_RATIO_TARGET = 0.40
FILES = 48  # in the project the team builds on, each of 1-5k tokens
FILES_READ = (3, 10)
FILE_TOKENS = (1_000, 5_000)
READS_PER_TURN = (1, 3)
DOC_TOKENS = (1_000, 3_000)
MAX_READ_TURNS = 9  # a look, up to nine turns of reads, a write and a submit: max_turns is 12
IDEA = (
    "A todo app with React and FastAPI for small teams. People sign up with an email "
    "address, create shared lists, assign items to each other with due dates and "
    "priorities, comment on items and get a daily digest by email. The API is versioned, "
    "documented with OpenAPI and rate limited per user; data lives in PostgreSQL with "
    "migrations; the web UI works on phones and meets WCAG 2.2 AA. Build it on the "
    "existing service in this repository: keep its package layout, its logging and its "
    "configuration, and extend its tests."
)
FANOUT_ROLES = ("WEB_DEV", "WEB_COMPONENTS_DEV", "API_DEV", "AUTH_DEV", "CORE_DEV", "DB_DEV",
                "PLATFORM_DEV", "INTEGRATIONS_DEV")  # fmt: skip


def _rng(*parts: object) -> random.Random:
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


_WORDS = ("account", "audit", "batch", "cache", "digest", "due", "email", "export", "item",
          "label", "limit", "list", "member", "note", "owner", "page", "priority", "quota",
          "report", "retry", "share", "status", "team", "token", "user", "view")  # fmt: skip


def _module(path: str, tokens: int, rng: random.Random) -> str:
    """A Python module of about `tokens` tokens: docstrings, typed functions, real shapes."""
    header = f'"""{path}: {" ".join(rng.sample(_WORDS, 6))}."""'
    lines = [header, "", "import logging", "", "log = logging.getLogger(__name__)", ""]
    while len(json.dumps("\n".join(lines))) < 4 * tokens:
        a, b, c = rng.sample(_WORDS, 3)
        lines += [
            "",
            f"def {a}_{b}({c}: dict[str, object], limit: int = {rng.randint(1, 500)}) -> list:",
            f'    """Return the {b} of each {a} in `{c}`, at most `limit` of them."""',
            f"    found = [str(v) for k, v in {c}.items() if k.startswith({a!r})]",
            "    if len(found) > limit:",
            f'        log.warning("{a} {b}: %d over the limit of %d", len(found), limit)',
            "    return sorted(found)[:limit]",
        ]
    return "\n".join(lines) + "\n"


def fixture_project(root: Path, seed: int) -> Path:
    """A git repository of `FILES` modules of 1-5k tokens in nested packages, in one commit."""
    rng = _rng("agentmill-caching-project", seed)
    root.mkdir(parents=True)
    for i in range(FILES):
        package = ("service", "service/api", "service/core", "service/store", "tests")[i % 5]
        path = f"{package}/{rng.choice(_WORDS)}_{i:02d}.py"
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_module(path, rng.randint(*FILE_TOKENS), rng))
    git(root, "init", "-q", "-b", "main")
    git(root, "add", ".")
    git(root, "commit", "-qm", "the service the team builds on")
    return root


def conversation_reply(request: dict[str, Any]) -> dict[str, Any]:
    """A diligent agent of build_app's team: look, read several files a turn, write, submit."""
    turn = agent_turn(request)
    if turn is None:
        return not_an_agent(request)
    role = turn.role
    if turn.step == 0:
        return reply_with(request, turn, "Looking at the tree, my brief and inputs.",
                          first_look(turn.deps))  # fmt: skip
    rng = _rng("agentmill-caching-agent", role)
    files = [p for p in listing_of(turn.messages) if p != BRIEF_PATH]
    picks = pick_reads(files, rng.randint(*FILES_READ), role)
    chunks: list[list[str]] = []
    while picks:
        size = rng.randint(*READS_PER_TURN)
        if len(chunks) == MAX_READ_TURNS - 1:
            size = len(picks)
        chunks.append(picks[:size])
        picks = picks[size:]
    if turn.step <= len(chunks):
        reads = [("read_file", {"path": p}) for p in chunks[turn.step - 1]]
        return reply_with(request, turn, f"Reading {len(reads)} more files.", reads)
    if turn.step == len(chunks) + 1:
        doc = _document(role, [p for chunk in chunks for p in chunk], rng)
        path = f"docs/{role.lower().replace('_', '-')}.md"
        return reply_with(request, turn, f"Writing {path}.",
                          [("write_file", {"path": path, "content": doc})])  # fmt: skip
    submit = {"summary": f"{role}: design written from {sum(map(len, chunks))} files."}
    return reply_with(request, turn, "Done.", [("submit", submit)])


def _document(role: str, read: list[str], rng: random.Random) -> str:
    lines = [f"# {role}", "", "## What I read", *(f"- `{p}`" for p in read), "", "## Plan"]
    target = 4 * rng.randint(*DOC_TOKENS)
    while len("\n".join(lines)) < target:
        a, b, c = rng.sample(_WORDS, 3)
        lines.append(f"- The {a} {b} keeps each {c} in one place and says why in its log line.")
    return "\n".join(lines) + "\n"


def _usage(seen: SeenRequest) -> Usage:
    return Usage(
        input_tokens=seen.input_tokens - seen.cache_read_tokens - seen.cache_write_tokens,
        cache_read_tokens=seen.cache_read_tokens,
        cache_write_tokens=seen.cache_write_tokens,
        cache_write_1h_tokens=seen.cache_write_1h_tokens,
        output_tokens=seen.output_tokens,
        requests=1,
    )


_COUNTED = ("requests", "prompt_tokens", "cache_read_tokens", "cache_write_tokens",
            "input_cost_usd", "cost_usd")  # fmt: skip


def served_costs(requests: list[SeenRequest]) -> dict[str, Any]:
    """What the fake served a run, priced request by request: per tier and in all."""
    tiers: dict[str, dict[str, float]] = {}
    for seen in requests:
        model = str(seen.body.get("model", ""))
        usage = _usage(seen)
        prompt_only = usage.model_copy(update={"output_tokens": 0})
        row = tiers.setdefault(seen.tier, dict.fromkeys(_COUNTED, 0.0))
        row["requests"] += 1
        row["prompt_tokens"] += usage.prompt_tokens
        row["cache_read_tokens"] += usage.cache_read_tokens
        row["cache_write_tokens"] += usage.cache_write_tokens
        row["input_cost_usd"] += cost_usd(model, prompt_only, "anthropic")
        row["cost_usd"] += cost_usd(model, usage, "anthropic")
    for row in tiers.values():
        row["hit_ratio"] = round(row["cache_read_tokens"] / row["prompt_tokens"], 4)
        row["input_cost_usd"] = round(row["input_cost_usd"], 6)
        row["cost_usd"] = round(row["cost_usd"], 6)
    total = {key: round(sum(row[key] for row in tiers.values()), 6) for key in _COUNTED}
    total["hit_ratio"] = round(total["cache_read_tokens"] / max(1, total["prompt_tokens"]), 4)
    return {**total, "by_tier": dict(sorted(tiers.items()))}


def measure(api_url: str, scratch: Path, seed: int = 7) -> dict[str, Any]:
    """Run the builds (each group in a process of its own) and return results.json's "caching"."""
    # benchmarks.run imports this module for its hook; its harness is imported here.
    from benchmarks.fake_api import BenchMessagesAPI
    from benchmarks.run import Bench, Options
    from benchmarks.servers import CONFIGS, ServerHandle

    # Whatever server api_url is, these runs do not wait for it to record them.
    server = ServerHandle(CONFIGS["tuned"], {"PREFECT_API_URL": api_url}, external=True)

    project = fixture_project(scratch / "project", seed)
    options = Options(seed=seed, latency_scale=0.0, samples=1)

    def copy_of(name: str) -> str:
        target = scratch / "work" / name
        shutil.copytree(project, target)
        return str(target)

    common: dict[str, Any] = {"kind": "agentmill", "zero": True, "idea": IDEA}
    fanout = _fanout_team()
    cached_workdir = copy_of("cached")
    with BenchMessagesAPI() as api:
        api.script = conversation_reply
        bench = Bench(api, scratch / "runs", options)
        runs = [
            {"name": "uncached", **common, "workdir": copy_of("uncached"),
             "team_overrides": {"prompt_caching": False}},
            {"name": "cached", **common, "workdir": cached_workdir},
        ]  # fmt: skip
        bench.run_group("caching", 32, runs, server)
        # Agents overlap only if a first request takes longer than starting the next task
        # run (tens of ms): the fan-out runs get latencies near real ones (haiku 0.2-0.8 s).
        fan = Bench(api, scratch / "fanout", Options(seed=seed, latency_scale=8.0))
        for name, warm in (("fanout_warm", True), ("fanout_cold", False)):
            api.prompt_cache.clear()  # each fan-out starts on a cold cache, in a fresh process
            team = {**fanout, "warm_up_shared_prefix": warm}
            spec = {"name": name, "kind": "agentmill", "idea": IDEA, "workdir": copy_of(name),
                    "team_overrides": team}  # fmt: skip
            fan.run_group(f"caching-{name}", 32, [spec], server)
        served = {
            name: api.requests_for(run["tag"])
            for group in (*bench.groups.values(), *fan.groups.values())
            for name, run in group["runs"].items()
        }
    report = json.loads((Path(cached_workdir) / ".tasks" / "report.json").read_text())
    return summarise(served, report["metrics"])


def _fanout_team() -> dict[str, Any]:
    """The PM, then eight haiku developers who all start when it is done."""
    roles = {r.id: r for r in default_roles()}
    fanned = [roles["PM"]] + [
        roles[r].model_copy(update={"depends_on": ["PM"]}) for r in FANOUT_ROLES
    ]
    return {"roles": [r.model_dump() for r in fanned]}


def summarise(served: dict[str, list[SeenRequest]], ledger: dict[str, Any]) -> dict[str, Any]:
    """The figures of results.json's "caching", from what the fake served each run."""
    off = served_costs(served["uncached"])
    on = served_costs(served["cached"])
    on_warmups = [r for r in served["cached"] if r.warm_up]
    warm, cold = served["fanout_warm"], served["fanout_cold"]
    warm_ups = [r for r in warm if r.warm_up]
    dev_tier = served_costs([r for r in warm if r.tier == "haiku"])
    cold_tier = served_costs([r for r in cold if r.tier == "haiku"])
    agents = [r for r in served["cached"] if r.role]
    roles = {r.role for r in agents}
    reads = [b for r in served["cached"] for b in _read_results(r)]
    ratio = round(on["input_cost_usd"] / off["input_cost_usd"], 4)
    shared = prompt_tokens(
        {"tools": TOOLS, "system": [{"type": "text", "text": shared_prompt(IDEA)}]}
    )
    return {
        "input_cost_ratio": ratio,
        "input_cost_ratio_target": INPUT_COST_RATIO_TARGET,
        "input_cost_ratio_met": ratio <= INPUT_COST_RATIO_TARGET,
        "cost_ratio": round(on["cost_usd"] / off["cost_usd"], 4),
        "hit_ratio": on["hit_ratio"],
        "hit_ratio_by_tier": {t: row["hit_ratio"] for t, row in on["by_tier"].items()},
        "warmup_cost_usd": round(sum(_cost(r) for r in on_warmups), 6),
        "warmup_requests": len(on_warmups),
        "cost_per_build_usd": {"uncached": off["cost_usd"], "cached": on["cost_usd"]},
        "input_cost_per_build_usd": {
            "uncached": off["input_cost_usd"],
            "cached": on["input_cost_usd"],
        },
        "ledger_uncached_cost_usd": ledger["cache"]["uncached_cost_usd"],
        "ledger_saved_usd": ledger["cache"]["saved_usd"],
        "uncached": off,
        "cached": on,
        "shared_prefix_tokens": shared,
        "conversation": {
            "agents": len(roles),
            "requests_per_agent": round(len(agents) / max(1, len(roles)), 2),
            "files_read_per_agent": round(len(reads) / max(1, len(roles)), 2),
            "tokens_per_file_read": round(sum(reads) / max(1, len(reads))),
        },
        "fanout": {
            "agents": len(FANOUT_ROLES),
            "warmup_requests": len(warm_ups),
            "warmup_cost_usd": round(sum(_cost(r) for r in warm_ups), 6),
            "tier_input_cost_usd_with_warmup": dev_tier["input_cost_usd"],
            "tier_input_cost_usd_without": cold_tier["input_cost_usd"],
            "tier_cache_write_tokens_with_warmup": dev_tier["cache_write_tokens"],
            "tier_cache_write_tokens_without": cold_tier["cache_write_tokens"],
        },
    }


def _cost(seen: SeenRequest) -> float:
    return cost_usd(str(seen.body.get("model", "")), _usage(seen), "anthropic")


def _read_results(seen: SeenRequest) -> list[int]:
    """Token sizes of the files whose read_file results arrived with this request."""
    messages = seen.body["messages"]
    if len(messages) < 2 or not isinstance(messages[-1].get("content"), list):
        return []
    reads = {
        b["id"]
        for b in messages[-2]["content"]
        if b.get("name") == "read_file" and b.get("input", {}).get("path") != BRIEF_PATH
    }
    return [
        prompt_tokens({"messages": [{"role": "user", "content": [b]}]})
        for b in messages[-1]["content"]
        if b.get("tool_use_id") in reads
    ]


def caching_markdown(c: dict[str, Any]) -> list[str]:
    """The results.md section: the ratio against its goal, per tier, and the warm-up."""
    on, off, f = c["cached"], c["uncached"], c["fanout"]
    met = "yes" if c["input_cost_ratio_met"] else "**no**"
    lines = [
        "## Prompt caching",
        "",
        f"The default team on the rule-following fake, caching off and on (same idea, same "
        f"project, zero latency): {c['conversation']['agents']} agents, "
        f"{c['conversation']['requests_per_agent']} requests and "
        f"{c['conversation']['files_read_per_agent']} files of about "
        f"{c['conversation']['tokens_per_file_read']} tokens read per agent. Costs are "
        "counted from what the fake served, priced per request.",
        "",
        "| measure | caching off | caching on | goal | met |",
        "|---|---|---|---|---|",
        f"| input-token cost of a build | ${off['input_cost_usd']:.4f} | "
        f"${on['input_cost_usd']:.4f} ({c['input_cost_ratio']:.0%}) | "
        f"≤ {c['input_cost_ratio_target']:.0%} | {met} |",
        f"| cost of a build, output included | ${off['cost_usd']:.4f} | ${on['cost_usd']:.4f} "
        f"({c['cost_ratio']:.0%}) | | |",
        f"| prompt tokens read from the cache | 0% | {c['hit_ratio']:.0%} | | |",
        "",
        "| tier | requests | prompt tokens | cache read | cache write | hit | input cost off "
        "| input cost on |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for tier, row in on["by_tier"].items():
        lines.append(
            f"| {tier} | {row['requests']:.0f} | {row['prompt_tokens']:.0f} | "
            f"{row['cache_read_tokens']:.0f} | {row['cache_write_tokens']:.0f} | "
            f"{row['hit_ratio']:.0%} | ${off['by_tier'][tier]['input_cost_usd']:.4f} | "
            f"${row['input_cost_usd']:.4f} |"
        )
    lines += [
        "",
        f"The run's own ledger put the same build without caching at "
        f"${c['ledger_uncached_cost_usd']:.4f} (measured: ${off['cost_usd']:.4f}). "
        f"Warm-ups in the default team: {c['warmup_requests']} (${c['warmup_cost_usd']:.4f}): "
        "the first agent of each tier starts alone and writes the shared prefix "
        f"({c['shared_prefix_tokens']} tokens) that the later ones read.",
        "",
        f"{f['agents']} haiku developers starting together on a cold shared prefix: "
        f"{f['warmup_requests']} warm-up request (${f['warmup_cost_usd']:.6f}); their tier "
        f"wrote {f['tier_cache_write_tokens_with_warmup']:.0f} tokens to the cache "
        f"(${f['tier_input_cost_usd_with_warmup']:.4f} of input) against "
        f"{f['tier_cache_write_tokens_without']:.0f} "
        f"(${f['tier_input_cost_usd_without']:.4f}) without the warm-up.",
        "",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    from tasks.testing.prefect_server import QUIET_OFF, PrefectServer

    parser = argparse.ArgumentParser(prog="python -m benchmarks.caching", description=__doc__)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--api-url", help="use this Prefect API instead of starting a server")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="agentmill-caching-"))
    try:
        if args.api_url:
            results = measure(args.api_url, scratch, args.seed)
        else:
            with PrefectServer(services_off=QUIET_OFF, root=scratch) as server:
                results = measure(server.api_url, scratch, args.seed)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print("\n".join(caching_markdown(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
