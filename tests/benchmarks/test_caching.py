"""The prompt-caching benchmark's parts: its project, its agents' conversations, its arithmetic.

The whole measurement (four builds of the default team) runs in
`python -m benchmarks.caching` and `benchmarks.run`; here each part is
checked on one agent against the fake Messages API.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from benchmarks.caching import (
    FILE_TOKENS,
    FILES,
    FILES_READ,
    READS_PER_TURN,
    caching_markdown,
    conversation_reply,
    fixture_project,
    served_costs,
    summarise,
)
from blocks.team import default_team
from tasks.agents.job import AgentJob, AgentSettings
from tasks.agents.loop import run_tool_loop
from tasks.agents.output import AgentOutput
from tasks.agents.prompts import BRIEF_PATH
from tasks.common.git import head_commit, open_repo, tree_of
from tasks.model.caching import estimate_tokens
from tasks.model.endpoint import Endpoint, use_endpoint
from tasks.testing.messages_api import FakeMessagesAPI

KEY = "sk-ant-api03-TESTKEY-bench-0123456789abcdef"


def test_the_project_holds_files_of_one_to_five_thousand_tokens(tmp_path: Path) -> None:
    root = fixture_project(tmp_path / "p", seed=7)
    files = [p for p in root.rglob("*.py") if ".git" not in p.parts]
    assert len(files) == FILES and len({p.parent for p in files}) >= 4  # nested packages
    for path in files:
        tokens = estimate_tokens(json.dumps(path.read_text()))
        assert FILE_TOKENS[0] <= tokens <= FILE_TOKENS[1] + 150, path


async def agent(api: FakeMessagesAPI, root: Path, caching: bool) -> AgentOutput:
    repo = open_repo(root)
    tree = tree_of(repo, head_commit(repo))
    repo.close()
    job = AgentJob(
        role=next(r for r in default_team().roles if r.id == "ARCHITECT"),
        settings=AgentSettings(model="claude-opus-5-5", timeout_s=10, prompt_caching=caching),
        provider="anthropic",
        idea="A todo app with React and FastAPI",
        base_tree=tree,
        workdir=str(root),
    )
    with use_endpoint(Endpoint("anthropic", base_url=api.base_url, api_key=SecretStr(KEY))):
        return await run_tool_loop(job)


@pytest.fixture
def project(api: FakeMessagesAPI, tmp_path: Path) -> Path:
    """The benchmark's project, and the fake answering as the benchmark's agents."""
    api.script = conversation_reply
    return fixture_project(tmp_path / "p", seed=7)


async def test_an_agent_reads_several_files_a_turn_then_writes_and_submits(
    api: FakeMessagesAPI, project: Path
) -> None:
    output = await agent(api, project, caching=True)
    turns = [
        [b["input"]["path"] for b in m["content"] if b.get("name") == "read_file"]
        for m in api.requests[-1].body["messages"]
        if m["role"] == "assistant"
    ]
    assert turns[0] == [BRIEF_PATH] and turns[-1] == []  # a first look; the write turn
    read = [p for turn in turns[1:-1] for p in turn]
    assert FILES_READ[0] <= len(read) <= FILES_READ[1] and BRIEF_PATH not in read
    assert all(READS_PER_TURN[0] <= len(t) <= READS_PER_TURN[1] for t in turns[1:-1])
    assert list(output.files) == ["docs/architect.md"] and output.usage.requests <= 12
    doc = output.files["docs/architect.md"]
    assert all(f"`{p}`" in doc for p in read)


async def test_the_figures_are_priced_from_what_the_fake_served(
    api: FakeMessagesAPI, project: Path
) -> None:
    cached = await agent(api, project, caching=True)
    on = list(api.requests)
    off_start = len(api.requests)
    plain = await agent(api, project, caching=False)
    off = api.requests[off_start:]

    costs = served_costs(on)
    assert costs["cost_usd"] == round(cached.cost_usd, 6)
    assert costs["hit_ratio"] == round(cached.usage.hit_ratio, 4)
    assert costs["by_tier"]["opus"]["requests"] == cached.usage.requests
    assert served_costs(off)["cost_usd"] == round(plain.cost_usd, 6)

    served = {"uncached": off, "cached": on, "fanout_warm": on, "fanout_cold": on}
    ledger = {"cache": {"uncached_cost_usd": cached.uncached_cost_usd, "saved_usd": 0.0}}
    results = summarise(served, ledger)
    assert results["input_cost_ratio"] == round(
        costs["input_cost_usd"] / served_costs(off)["input_cost_usd"], 4
    )
    assert 0 < results["input_cost_ratio"] < 1 and results["warmup_requests"] == 0
    assert results["ledger_uncached_cost_usd"] == cached.uncached_cost_usd
    assert round(plain.cost_usd, 6) == round(cached.uncached_cost_usd, 6)
    markdown = "\n".join(caching_markdown(results))
    assert "## Prompt caching" in markdown and "| opus |" in markdown
