"""Prompt caching by the API's rules: the fake, the offline model and the tool loop's breakpoints.

Requests go through the real SDK and HTTP to the fake Messages API (or the
offline transport), so what is checked is what a run would see: usage as
the API reports it (cache writes and reads, the 1-hour part), the 400s the
API answers for broken rules, and where the tool loop puts its breakpoints.
"""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import anthropic
import pytest
from anthropic.types import Message
from pydantic import SecretStr

from blocks.team import default_team
from tasks.agents.job import AgentJob, AgentSettings
from tasks.agents.loop import run_tool_loop
from tasks.agents.output import AgentOutput
from tasks.agents.prompts import TOOLS, shared_prompt
from tasks.agents.scripted import reply_with, turn_of
from tasks.build.offline_script import build_reply
from tasks.common.git import EMPTY_TREE
from tasks.model.caching import PromptCache, prompt_tokens
from tasks.model.endpoint import Endpoint, use_endpoint
from tasks.model.pricing import Usage, cost_usd, price_of
from tasks.testing.messages_api import FakeMessagesAPI, SeenRequest

KEY = "sk-ant-api03-TESTKEY-cache-0123456789abcdef"
EPHEMERAL = {"type": "ephemeral"}
# About 700 tokens at four characters a token: over 512 (the 5.5 models), under 4,096.
LONG = "Agentmill builds software from an idea with a team of agents. " * 45


def client_for(api: FakeMessagesAPI) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(api_key=KEY, base_url=api.base_url, max_retries=0)


def text(value: str, ttl: str | None = None, marked: bool = True) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "text", "text": value}
    if marked:
        block["cache_control"] = {**EPHEMERAL, **({"ttl": ttl} if ttl else {})}
    return block


async def ask(
    api: FakeMessagesAPI,
    system: list[dict[str, Any]],
    messages: list[dict[str, Any]] | None = None,
    *,
    model: str = "claude-haiku-5-5",
    tools: list[dict[str, Any]] | None = None,
) -> Message:
    async with client_for(api) as client:
        return await client.messages.create(
            model=model,
            max_tokens=16,
            system=system,  # type: ignore[arg-type]
            messages=messages or [{"role": "user", "content": "Hello."}],  # type: ignore[arg-type]
            tools=tools or [],  # type: ignore[arg-type]
        )


def written(m: Message) -> int:
    return m.usage.cache_creation_input_tokens or 0


def read(m: Message) -> int:
    return m.usage.cache_read_input_tokens or 0


async def test_a_prefix_below_the_models_minimum_is_silently_not_cached(
    api: FakeMessagesAPI,
) -> None:
    system = [text(LONG)]
    for _ in range(2):  # Haiku 4.5's minimum is 4,096 tokens: never cached, no error
        reply = await ask(api, system, model="claude-haiku-4-5")
        assert written(reply) == read(reply) == 0 and reply.usage.input_tokens > 512
    first, second = await ask(api, system), await ask(api, system)  # Haiku 5.5's is 512
    prompt = first.usage.input_tokens + written(first)
    assert written(first) > 512 and read(first) == 0
    assert read(second) == written(first) and written(second) == 0
    assert second.usage.input_tokens + read(second) == prompt  # the same tokens, now read


async def test_the_prefix_runs_tools_then_system_then_messages(api: FakeMessagesAPI) -> None:
    tools = [{"name": "look", "description": "Look.", "input_schema": {"type": "object"}}]
    system = [text(LONG)]
    first = await ask(api, system, tools=tools)
    other_question = [{"role": "user", "content": "Something else entirely."}]
    assert read(await ask(api, system, other_question, tools=tools)) == written(first)
    changed_tool = [{**tools[0], "description": "Look closely."}]
    assert read(await ask(api, system, tools=changed_tool)) == 0  # tools come first
    assert read(await ask(api, [text(LONG + " More.")], tools=tools)) == 0
    assert read(await ask(api, system, tools=tools, model="claude-sonnet-5-5")) == 0  # per model


async def test_a_fifth_breakpoint_is_refused_with_the_apis_400(api: FakeMessagesAPI) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        await ask(api, [text(f"part {i} " + LONG) for i in range(5)])
    assert "A maximum of 4 blocks with cache_control may be provided. Found 5." in str(info.value)
    four = await ask(api, [text(f"part {i} " + LONG) for i in range(4)])
    assert four.usage.cache_creation_input_tokens


async def test_a_1h_breakpoint_after_a_5m_one_is_refused(api: FakeMessagesAPI) -> None:
    with pytest.raises(anthropic.BadRequestError, match="must not come after a ttl='5m'"):
        await ask(api, [text(LONG), text("and more " + LONG, ttl="1h")])
    both = await ask(api, [text(LONG, ttl="1h"), text("and more " + LONG)])
    assert both.usage.cache_creation is not None
    assert both.usage.cache_creation.ephemeral_1h_input_tokens > 512
    assert both.usage.cache_creation.ephemeral_5m_input_tokens > 512


async def test_entries_expire_after_their_ttl_and_a_read_refreshes_them(
    api: FakeMessagesAPI,
) -> None:
    five, hour = [text(LONG)], [text("hourly " + LONG, ttl="1h")]
    assert written(await ask(api, five)) and written(await ask(api, hour))
    api.prompt_cache.advance(200)
    assert read(await ask(api, five))  # read at 200 s: refreshed until 500 s
    api.prompt_cache.advance(200)
    assert read(await ask(api, five))  # 400 s after the write, 200 s after the read
    api.prompt_cache.advance(301)
    assert read(await ask(api, five)) == 0  # unread for 301 s: gone, written again
    assert read(await ask(api, hour))  # 701 s: the 1-hour entry lives on
    api.prompt_cache.advance(3601)
    again = await ask(api, hour)
    assert read(again) == 0 and again.usage.cache_creation is not None
    assert again.usage.cache_creation.ephemeral_1h_input_tokens == written(again)


def conversation(extra_blocks: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A first turn ending in a marked block, and the next one `extra_blocks` blocks longer."""
    first = [{"role": "user", "content": [text(LONG)]}]
    answer = [{"type": "text", "text": f"note {i}"} for i in range(extra_blocks - 1)]
    later = [
        {"role": "user", "content": [text(LONG, marked=False)]},
        {"role": "assistant", "content": answer or [{"type": "text", "text": "ok"}]},
        {"role": "user", "content": [text("next")]},
    ]
    return first, later


@pytest.mark.parametrize(("extra", "hit"), [(19, True), (20, False)])
async def test_a_breakpoint_looks_back_20_blocks_and_no_further(
    api: FakeMessagesAPI, extra: int, hit: bool
) -> None:
    first, later = conversation(extra)
    first_reply = await ask(api, [text("Be brief.", marked=False)], first)
    reply = await ask(api, [text("Be brief.", marked=False)], later)
    assert (read(reply) == written(first_reply)) is hit and (read(reply) == 0) is not hit


async def test_requests_sent_together_all_write_and_a_later_one_reads(
    api: FakeMessagesAPI,
) -> None:
    api.latency = lambda body: 0.4  # an entry is readable once its response has begun
    together = await asyncio.gather(*(ask(api, [text(LONG)]) for _ in range(3)))
    assert all(written(m) and read(m) == 0 for m in together)
    assert read(await ask(api, [text(LONG)])) == written(together[0])


def job_for(role_id: str, tmp_path: Path, idea: str, **settings: Any) -> AgentJob:
    role = next(r for r in default_team().roles if r.id == role_id)
    return AgentJob(
        role=role,
        settings=AgentSettings(model="claude-haiku-5-5", timeout_s=10, **settings),
        provider="anthropic",
        idea=idea,
        base_tree=EMPTY_TREE,
        workdir=str(tmp_path),
    )


async def run(api: FakeMessagesAPI, job: AgentJob) -> AgentOutput:
    endpoint = Endpoint("anthropic", base_url=api.base_url, api_key=SecretStr(KEY))
    with use_endpoint(endpoint):
        return await run_tool_loop(job)


def markers(body: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = [*body["tools"], *body["system"]]
    for message in body["messages"]:
        if isinstance(message["content"], list):
            blocks += message["content"]
    return [b for b in blocks if "cache_control" in b]


def uncached(seen: SeenRequest) -> int:
    return seen.input_tokens - seen.cache_read_tokens - seen.cache_write_tokens


async def test_each_turn_reads_every_earlier_turn_from_the_cache(
    api: FakeMessagesAPI, tmp_path: Path, unique_idea: str
) -> None:
    output = await run(api, job_for("PM", tmp_path, unique_idea))
    seen = api.requests
    assert len(seen) == output.usage.requests == 4
    for i, request in enumerate(seen):
        assert 2 <= len(markers(request.body)) <= 3  # never near the API's 4
        last = request.body["messages"][-1]["content"][-1]
        assert last["cache_control"] == EPHEMERAL  # the breakpoint moves to the last block
        assert uncached(request) == 0  # everything is either read or written
        if i:
            assert request.cache_read_tokens == seen[i - 1].input_tokens  # all of turn i-1
            assert request.cache_write_tokens == request.input_tokens - seen[i - 1].input_tokens
    assert output.usage.cache_read_tokens == sum(r.cache_read_tokens for r in seen)
    assert output.usage.cache_write_tokens == sum(r.cache_write_tokens for r in seen)
    haiku = price_of("claude-haiku-5-5")
    assert haiku is not None and output.uncached_cost_usd > output.cost_usd > 0
    prompt = sum(r.input_tokens for r in seen)
    out = sum(r.output_tokens for r in seen)
    assert output.uncached_cost_usd == pytest.approx(
        (prompt * haiku.input + out * haiku.output) / 1e6
    )


def many_calls(request: dict[str, Any]) -> dict[str, Any]:
    """An agent that looks at the tree twelve times in one turn (25 new blocks), then submits."""
    turn = turn_of(request)
    assert turn is not None
    if turn.step == 0:
        return reply_with(request, turn, "Looking hard.", [("list_files", {})] * 12)
    return reply_with(request, turn, "Done.", [("submit", {"summary": "looked"})])


async def test_a_turn_longer_than_the_lookback_still_reads_the_last_turn(
    api: FakeMessagesAPI, tmp_path: Path, unique_idea: str
) -> None:
    api.script = many_calls
    await run(api, job_for("PM", tmp_path, unique_idea))
    first, second = api.requests[:2]
    assert second.cache_read_tokens == first.input_tokens  # found at the previous breakpoint
    # Without the previous turn's breakpoint the request finds only the shared prefix: the
    # previous turn's entry is 25 blocks back, past the lookback.
    only_last = copy.deepcopy(second.body)
    history_mark = len(first.body["messages"]) - 1
    only_last["messages"][history_mark]["content"][-1].pop("cache_control")
    cache = PromptCache()
    cache.serve(first.body).begin_response()
    shared = prompt_tokens({"tools": first.body["tools"], "system": first.body["system"][:1]})
    assert cache.serve(only_last).usage["cache_read_input_tokens"] == shared


async def test_agents_of_a_build_share_one_entry_for_the_shared_prefix(
    api: FakeMessagesAPI, tmp_path: Path, unique_idea: str
) -> None:
    await run(api, job_for("PM", tmp_path, unique_idea))
    shared = prompt_tokens(
        {"tools": TOOLS, "system": [{"type": "text", "text": shared_prompt(unique_idea)}]}
    )
    before = len(api.requests)
    await run(api, job_for("UX_RESEARCHER", tmp_path, unique_idea))
    assert api.requests[before].cache_read_tokens == shared  # the rules and the idea, read
    before = len(api.requests)
    await run(api, job_for("UX_RESEARCHER", tmp_path, unique_idea + " (another build)"))
    assert api.requests[before].cache_read_tokens == 0


async def test_the_offline_model_reports_what_the_api_would(
    api: FakeMessagesAPI, tmp_path: Path, unique_idea: str
) -> None:
    on_fake = await run(api, job_for("PM", tmp_path, unique_idea))
    offline = Endpoint("offline", offline_script=build_reply)
    job = job_for("PM", tmp_path, unique_idea).model_copy(update={"provider": "offline"})
    with use_endpoint(offline):
        first = await run_tool_loop(job)
        again = await run_tool_loop(job)  # the same process: the offline cache is warm
    assert first.usage == on_fake.usage and first.usage.cache_read_tokens > 0
    assert again.usage.cache_write_tokens < first.usage.cache_write_tokens
    assert again.usage.cache_read_tokens > first.usage.cache_read_tokens


async def test_with_caching_off_nothing_is_marked_and_the_cost_is_the_uncached_one(
    api: FakeMessagesAPI, tmp_path: Path, unique_idea: str
) -> None:
    cached = await run(api, job_for("PM", tmp_path, unique_idea))
    before = len(api.requests)
    plain = await run(api, job_for("PM", tmp_path / "off", unique_idea, prompt_caching=False))
    assert all(not markers(r.body) for r in api.requests[before:])
    assert plain.usage.cache_read_tokens == plain.usage.cache_write_tokens == 0
    assert plain.usage.input_tokens == cached.usage.prompt_tokens  # the very same prompts
    assert plain.cost_usd == pytest.approx(cached.uncached_cost_usd)  # "saved" is against this


async def test_the_1h_ttl_marks_the_shared_prefix_and_is_priced_at_twice_input(
    api: FakeMessagesAPI, tmp_path: Path, unique_idea: str
) -> None:
    output = await run(api, job_for("PM", tmp_path, unique_idea, shared_prefix_ttl="1h"))
    first = api.requests[0]
    assert first.body["system"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    shared = prompt_tokens({"tools": first.body["tools"], "system": first.body["system"][:1]})
    assert first.cache_write_1h_tokens == shared < first.cache_write_tokens
    assert output.usage.cache_write_1h_tokens == shared  # only the shared prefix lives an hour
    haiku = price_of("claude-haiku-5-5")
    assert haiku is not None
    assert haiku.cache_write_1h == 2 * haiku.input and haiku.cache_write == 1.25 * haiku.input
    writes = Usage(cache_write_tokens=first.cache_write_tokens, cache_write_1h_tokens=shared)
    assert cost_usd("claude-haiku-5-5", writes, "anthropic") == pytest.approx(
        (shared * haiku.cache_write_1h + (first.cache_write_tokens - shared) * haiku.cache_write)
        / 1e6
    )
