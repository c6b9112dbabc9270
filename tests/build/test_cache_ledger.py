"""The prompt-cache ledger of a build: per agent, per model and per run, in every place it shows.

One build of the default team on Claude (the fake Messages API, whose cache
follows the API's rules) through the command line, then its cached rerun.
The ledger must agree with what the fake served, request by request.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.build_app import main
from tasks.model.ledger import CacheLedger
from tasks.model.pricing import Usage, cost_usd
from tasks.testing.messages_api import FakeMessagesAPI, SeenRequest


def priced(seen: SeenRequest, model: str, cached: bool = True) -> float:
    usage = Usage(
        input_tokens=seen.input_tokens - seen.cache_read_tokens - seen.cache_write_tokens,
        cache_read_tokens=seen.cache_read_tokens,
        cache_write_tokens=seen.cache_write_tokens,
        cache_write_1h_tokens=seen.cache_write_1h_tokens,
        output_tokens=seen.output_tokens,
    )
    return cost_usd(model, usage if cached else usage.without_cache(), "anthropic")


def test_the_ledger_shows_what_caching_read_wrote_and_saved(
    api: FakeMessagesAPI,
    tmp_path: Path,
    unique_idea: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    workdir = tmp_path / "app"
    assert main([unique_idea, "--workdir", str(workdir), "--provider", "anthropic"]) == 0
    # The summary table's prompt-cache row (tasks.cli.summary)
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.startswith("prompt cache"))
    report = json.loads((workdir / ".tasks" / "report.json").read_text())
    metrics = report["metrics"]
    cache = CacheLedger.model_validate(metrics["cache"])
    seen = api.requests

    assert cache.requests == metrics["model_requests"] == len(seen)
    assert cache.cache_read_tokens == sum(r.cache_read_tokens for r in seen) > 0
    assert cache.cache_write_tokens == sum(r.cache_write_tokens for r in seen) > 0
    assert 0.5 < cache.hit_ratio < 1
    assert cache.cost_usd == pytest.approx(metrics["cost_usd"], abs=1e-5)
    assert cache.cost_usd == pytest.approx(sum(priced(r, r.body["model"]) for r in seen), abs=1e-5)
    assert cache.uncached_cost_usd == pytest.approx(
        sum(priced(r, r.body["model"], cached=False) for r in seen), abs=1e-5
    )
    assert cache.saved_usd == pytest.approx(cache.uncached_cost_usd - cache.cost_usd, abs=1e-6)
    assert cache.saved_usd > 0

    by_model = {m: CacheLedger.model_validate(v) for m, v in metrics["cache_by_model"].items()}
    assert set(by_model) == {"claude-opus-5-5", "claude-sonnet-5-5", "claude-haiku-5-5"}
    assert sum(m.cache_read_tokens for m in by_model.values()) == cache.cache_read_tokens
    for agent in report["agents"]:
        ledger = agent["cache"]
        assert ledger["requests"] == agent["requests"] > 0
        assert 0 < ledger["hit_ratio"] < 1 and ledger["saved_usd"] == pytest.approx(
            ledger["uncached_cost_usd"] - ledger["cost_usd"], abs=1e-6
        )

    markdown = (workdir / ".tasks" / "report.md").read_text()  # also the run's artifact
    assert f"Prompt cache: {cache.hit_ratio:.0%} of prompt tokens read from the cache" in markdown
    assert "| claude-haiku-5-5 |" in markdown and "| cache hit | saved USD |" in markdown
    assert f"  {cache.hit_ratio:.0%} of input read" in line
    assert f"saved ${cache.saved_usd:.4f} of ${cache.uncached_cost_usd:.4f} uncached" in line

    # A rerun is all Prefect cache hits: no request, so nothing read, written or saved.
    assert main([unique_idea, "--workdir", str(workdir), "--provider", "anthropic"]) == 0
    rerun = json.loads((workdir / ".tasks" / "report.json").read_text())["metrics"]
    assert rerun["model_requests"] == 0 and rerun["cache"] == CacheLedger().model_dump()
    assert "  0% of input read (0 read, 0 written)" in capsys.readouterr().out
