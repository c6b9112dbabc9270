"""The anthropic provider against a fake Messages API on loopback (real HTTP, real SSE).

Covers the tool loop over a streamed connection, the retry layer (429 with
retry-after, 529, 5xx, a reset mid-stream, an error event) and the failures
that must not be retried (400, 401), counting the requests the fake saw.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from blocks.team import default_team
from tasks.agents.job import AgentJob, AgentSettings
from tasks.agents.loop import run_tool_loop
from tasks.build.offline_script import REQUESTS_PER_AGENT as PER_AGENT
from tasks.common.git import EMPTY_TREE
from tasks.common.retry import Backoff
from tasks.model.endpoint import Endpoint, ModelCallError, use_endpoint
from tasks.testing.messages_api import FakeMessagesAPI, Fault

KEY = "sk-ant-api03-TESTKEY-do-not-log-0123456789abcdef"
FAST = Backoff(max_attempts=4, base_delay_s=0.05, max_delay_s=0.2)


def job_for(role_id: str, tmp_path: Path, idea: str = "a todo app") -> AgentJob:
    role = next(r for r in default_team().roles if r.id == role_id)
    return AgentJob(
        role=role,
        settings=AgentSettings(model="claude-haiku-5-5", timeout_s=10),
        provider="anthropic",
        idea=idea,
        base_tree=EMPTY_TREE,
        workdir=str(tmp_path),
    )


async def run(api: FakeMessagesAPI, job: AgentJob, backoff: Backoff = FAST) -> Any:
    endpoint = Endpoint("anthropic", base_url=api.base_url, api_key=SecretStr(KEY))
    with use_endpoint(endpoint):
        return await run_tool_loop(job, backoff)


async def test_streamed_tool_loop_over_http(api: FakeMessagesAPI, tmp_path: Path) -> None:
    output = await run(api, job_for("PM", tmp_path))

    assert output.files and next(iter(output.files)).startswith("docs/")
    assert output.usage.requests == PER_AGENT and output.usage.output_tokens > 0
    assert output.usage.cache_write_tokens > 0 and output.usage.cache_read_tokens > 0
    assert output.cost_usd > 0  # priced from the table for a real provider
    first = api.requests[0]
    assert first.body["stream"] is True
    assert first.headers["authorization"] == f"Bearer {KEY}"
    assert first.body["system"][0]["cache_control"] == {"type": "ephemeral"}
    pointer = "Role: PM. Brief: .tasks/manifest.json. Dependencies: none."
    marked = {"type": "text", "text": pointer, "cache_control": {"type": "ephemeral"}}
    assert first.body["messages"] == [{"role": "user", "content": [marked]}]
    # the second request carries the tool results of the first reply's tool calls:
    # the listing, then the brief
    results = [
        b for b in api.requests[1].body["messages"][-1]["content"] if b["type"] == "tool_result"
    ]
    assert len(results) == 2 and ".tasks/manifest.json" in results[0]["content"]
    assert "a todo app" in results[1]["content"]


async def test_429_with_retry_after_is_retried_after_the_wait(
    api: FakeMessagesAPI, tmp_path: Path
) -> None:
    api.fail_next(Fault(status=429, headers={"retry-after": "0.4"}))
    output = await run(api, job_for("PM", tmp_path))
    assert output.usage.requests == PER_AGENT + 1 and len(api.requests) == PER_AGENT + 1
    assert api.requests[1].at - api.requests[0].at >= 0.38


@pytest.mark.parametrize(
    "fault",
    [
        Fault(status=529),
        Fault(status=500),
        Fault(status=503),
        Fault(kind="reset"),
        Fault(kind="error_event", error_type="overloaded_error"),
    ],
    ids=["529", "500", "503", "reset-mid-stream", "overloaded-event"],
)
async def test_transient_faults_are_retried_once_each(
    api: FakeMessagesAPI, tmp_path: Path, fault: Fault
) -> None:
    api.fail_next(fault)
    output = await run(api, job_for("PM", tmp_path))
    assert len(api.requests) == PER_AGENT + 1 and output.usage.requests == PER_AGENT + 1


async def test_retries_stop_at_the_bound_with_a_clear_error(
    api: FakeMessagesAPI, tmp_path: Path
) -> None:
    api.fail_next(*[Fault(status=529)] * 10)
    with pytest.raises(ModelCallError, match=r"agent PM: server error \(529\).*after 4 attempts"):
        await run(api, job_for("PM", tmp_path))
    assert len(api.requests) == 4  # the SDK's own retries are off: no multiplication


async def test_400_fails_at_once_with_the_api_message(api: FakeMessagesAPI, tmp_path: Path) -> None:
    api.fail_next(Fault(status=400, message="max_tokens: 99999999 > 128000, the maximum"))
    with pytest.raises(
        ModelCallError, match=r"agent PM: the request was refused \(400\): max_tokens"
    ):
        await run(api, job_for("PM", tmp_path))
    assert len(api.requests) == 1


async def test_401_says_to_fix_the_key_and_does_not_echo_it(
    api: FakeMessagesAPI, tmp_path: Path
) -> None:
    api.fail_next(Fault(status=401, message="invalid x-api-key"))
    with pytest.raises(ModelCallError) as info:
        await run(api, job_for("PM", tmp_path))
    assert "ANTHROPIC_API_KEY" in str(info.value) and KEY not in str(info.value)
    assert len(api.requests) == 1


async def test_a_bad_path_from_the_model_is_refused_to_it(
    api: FakeMessagesAPI, tmp_path: Path
) -> None:
    from tasks.build.offline_script import build_reply as scripted_reply

    def script(body: dict[str, Any]) -> dict[str, Any]:
        reply = scripted_reply(body)
        for block in reply["content"]:
            if block.get("name") == "write_file":
                block["input"]["path"] = "../../etc/escape.txt"
        return reply

    api.script = script
    output = await run(api, job_for("PM", tmp_path))
    assert output.files == {}
    results = api.requests[PER_AGENT - 1].body["messages"][-1]["content"]
    assert results[0]["is_error"] is True and "climbs out" in results[0]["content"]


def test_the_offline_transport_speaks_json_too() -> None:
    """Non-streamed requests get a JSON Message, as the real API does."""
    import httpx2

    from tasks.build.offline_script import build_reply
    from tasks.model.offline import handler

    handle = handler(build_reply)

    body = {
        "model": "claude-haiku-5-5",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "Role: PM. Brief: x. Dependencies: none."}],
    }
    response = handle(httpx2.Request("POST", "http://x/v1/messages", content=json.dumps(body)))
    message = json.loads(response.content)
    assert message["type"] == "message" and message["content"][1]["type"] == "tool_use"
    bad = handle(httpx2.Request("POST", "http://x/v1/messages", content=b"{}"))
    assert bad.status_code == 400
