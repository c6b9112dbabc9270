"""The shared prefix warm-up: one small request when several agents start on a cold prefix at once.

The graph runs real agent tasks (the session's Prefect server) against the
fake Messages API, whose prompt cache follows the API's rules: an entry is
readable only once the response that wrote it has begun, so agents whose
first requests go out together all write the prefix unless it was warmed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from blocks.team import Role
from tasks.agents.graph import AgentGraph, Node
from tasks.agents.job import AgentSettings
from tasks.agents.scripted import not_an_agent, reply_with, turn_of
from tasks.common.git import EMPTY_TREE
from tasks.model import warmup
from tasks.model.caching import prompt_tokens
from tasks.model.endpoint import Endpoint, use_endpoint
from tasks.model.pricing import Usage, cost_usd
from tasks.testing.messages_api import FakeMessagesAPI, Fault, SeenRequest, step_of

KEY = "sk-ant-api03-TESTKEY-warmup-0123456789abcdef"
HAIKU, SONNET = "claude-haiku-5-5", "claude-sonnet-5-5"


def role(role_id: str, *deps: str, instructions: str = "") -> Role:
    return Role(id=role_id, title=role_id, phase="p", track="t", depends_on=list(deps),
                instructions=instructions or f"be {role_id}")  # fmt: skip


def script(request: dict[str, Any]) -> dict[str, Any]:
    """Read the dependencies' outputs (or the tree), then submit."""
    turn = turn_of(request)
    if turn is None:
        return not_an_agent(request)
    if turn.step == 0:
        reads = [("read_output", {"role": d}) for d in turn.deps] or [("list_files", {})]
        return reply_with(request, turn, "reading", reads)
    return reply_with(request, turn, "done", [("submit", {"summary": f"{turn.role} done"})])


@pytest.fixture
def fake(api: FakeMessagesAPI) -> FakeMessagesAPI:
    api.script = script
    # First requests take a while to answer, so agents that start together overlap.
    api.latency = lambda body: 0.4 if step_of(body) == 0 else 0.0
    return api


async def run_graph(
    api: FakeMessagesAPI,
    tmp_path: Path,
    idea: str,
    roles: list[Role],
    models: dict[str, str],
    warm_up: bool = True,
) -> None:
    graph = AgentGraph(provider="anthropic", idea=idea, base_tree=EMPTY_TREE,
                       workdir=str(tmp_path))  # fmt: skip
    for r in roles:
        settings = AgentSettings(model=models.get(r.id, HAIKU), max_turns=3, warm_up=warm_up)
        graph.add(Node(role=r, settings=settings))
    endpoint = Endpoint("anthropic", base_url=api.base_url, api_key=SecretStr(KEY))
    with use_endpoint(endpoint):
        await asyncio.gather(*(graph.run(r.id) for r in roles))


def fan_out(*leaves: str) -> list[Role]:
    return [role("ROOT"), *(role(leaf, "ROOT") for leaf in leaves)]


def first_requests(api: FakeMessagesAPI, roles: set[str]) -> list[SeenRequest]:
    return [r for r in api.requests if r.role in roles and r.step == 0]


def shared_tokens(seen: SeenRequest) -> int:
    return prompt_tokens({"tools": seen.body["tools"], "system": seen.body["system"][:1]})


async def test_agents_that_start_together_read_one_warmed_prefix(
    fake: FakeMessagesAPI, tmp_path: Path, unique_idea: str
) -> None:
    leaves = {"A", "B", "C"}
    warmups = warmup.WarmUps()
    with warmup.RUN_WARMUPS.use(warmups):
        await run_graph(fake, tmp_path, unique_idea, fan_out(*leaves), {"ROOT": SONNET})
    warm = [r for r in fake.requests if r.warm_up]
    assert len(warm) == 1 and warm[0].tier == "haiku"  # the sonnet root started alone
    body = warm[0].body
    assert body["max_tokens"] == 1
    assert body["messages"] == [{"role": "user", "content": warmup.WARM_UP_PROMPT}]
    assert "cache_control" in body["system"][0] and len(body["system"]) == 1
    shared = shared_tokens(warm[0])
    assert warm[0].cache_write_tokens == shared
    firsts = first_requests(fake, leaves)
    assert len(firsts) == 3
    for seen in firsts:  # they waited for it, then read it instead of writing it
        assert seen.at >= warm[0].at + 0.4
        assert seen.cache_read_tokens == shared
    (ledger,) = warmups.by_model().values()
    usage = Usage(
        input_tokens=warm[0].input_tokens - shared,
        cache_write_tokens=shared,
        output_tokens=warm[0].output_tokens,
    )
    assert ledger.warmup_requests == 1
    assert ledger.warmup_cost_usd == pytest.approx(cost_usd(HAIKU, usage, "anthropic"), abs=1e-6)


async def test_without_the_warm_up_each_agent_writes_the_prefix_itself(
    fake: FakeMessagesAPI, tmp_path: Path, unique_idea: str
) -> None:
    leaves = {"A", "B", "C"}
    await run_graph(fake, tmp_path, unique_idea, fan_out(*leaves), {"ROOT": SONNET}, False)
    assert not any(r.warm_up for r in fake.requests)
    firsts = first_requests(fake, leaves)
    assert all(seen.cache_read_tokens == 0 for seen in firsts)  # sent together: all missed
    assert all(seen.cache_write_tokens > shared_tokens(seen) for seen in firsts)


async def test_an_agent_that_starts_alone_is_not_held_back(
    fake: FakeMessagesAPI, tmp_path: Path, unique_idea: str
) -> None:
    await run_graph(fake, tmp_path, unique_idea, fan_out("A"), {"ROOT": SONNET})
    assert not any(r.warm_up for r in fake.requests)
    (first,) = first_requests(fake, {"A"})
    assert first.cache_write_tokens > shared_tokens(first)  # it wrote the prefix itself


async def test_agents_served_from_prefects_cache_do_not_count_as_starting(
    fake: FakeMessagesAPI,
    tmp_path: Path,
    unique_idea: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await run_graph(fake, tmp_path, unique_idea, fan_out("A", "B", "C"), {"ROOT": SONNET})
    assert sum(r.warm_up for r in fake.requests) == 1
    # Later, the prefix has expired everywhere, and only B changed: A and C are cache hits.
    fake.prompt_cache.advance(301)
    monkeypatch.setattr(warmup, "_LIVE_UNTIL", {})
    before = len(fake.requests)
    changed = [role("ROOT"), role("A", "ROOT"), role("B", "ROOT", instructions="be B, again"),
               role("C", "ROOT")]  # fmt: skip
    await run_graph(fake, tmp_path, unique_idea, changed, {"ROOT": SONNET})
    again = fake.requests[before:]
    assert {r.role for r in again} == {"B"}  # no warm-up: B was the only one to start
    assert again[0].cache_read_tokens == 0 and again[0].cache_write_tokens > 0


async def test_a_prefix_below_the_models_minimum_is_never_warmed(
    fake: FakeMessagesAPI, tmp_path: Path, unique_idea: str
) -> None:
    models = {leaf: "claude-haiku-4-5" for leaf in "ABC"} | {"ROOT": SONNET}  # 4,096 minimum
    await run_graph(fake, tmp_path, unique_idea, fan_out("A", "B", "C"), models)
    assert not any(r.warm_up for r in fake.requests)


async def test_a_failed_warm_up_leaves_the_agents_to_write_it(
    fake: FakeMessagesAPI, tmp_path: Path, unique_idea: str, caplog: pytest.LogCaptureFixture
) -> None:
    fake.fail_next(Fault(status=529))  # three roots start at once: the warm-up goes first
    await run_graph(fake, tmp_path, unique_idea, [role("A"), role("B"), role("C")], {})
    warm = [r for r in fake.requests if r.warm_up]
    assert len(warm) == 1 and warm[0].fault == "status"  # one attempt, no retry
    firsts = first_requests(fake, {"A", "B", "C"})
    assert len(firsts) == 3 and all(seen.cache_write_tokens > 0 for seen in firsts)
    assert "warming the shared prompt prefix failed" in caplog.text
