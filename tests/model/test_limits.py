"""Fleet rate limits: pacing from the API's headers, the fake's limit, the `limits` command."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tasks.cli.limits import BadLimit, _pairs, per_minute_spec
from tasks.model.limits import FleetLimits, Pacer, in_flight_name, per_minute_name
from tasks.testing.messages_api import FakeMessagesAPI


def _headers(limit: int, remaining: int, reset_in_s: float) -> dict[str, str]:
    reset = (datetime.now(UTC) + timedelta(seconds=reset_in_s)).isoformat()
    return {
        "anthropic-ratelimit-requests-limit": str(limit),
        "anthropic-ratelimit-requests-remaining": str(remaining),
        "anthropic-ratelimit-requests-reset": reset.replace("+00:00", "Z"),
    }


def test_a_tier_with_room_left_is_not_slowed() -> None:
    pacer = Pacer()
    pacer.observe(_headers(100, 50, 30))
    pacer.observe({})  # no headers at all (the offline model, a proxy)
    assert pacer.not_before == 0.0


def test_a_tier_near_its_limit_waits_a_share_of_the_time_to_the_reset() -> None:
    pacer = Pacer()
    pacer.observe(_headers(100, 4, 2.0), now=10.0)
    assert pacer.not_before == pytest.approx(10.4, abs=0.05)  # 2 s shared by 4 left, plus one

    pacer = Pacer()
    pacer.observe(_headers(10, 1, 0.3))

    async def two_starts() -> list[float]:
        starts = []
        for _ in range(2):
            await pacer.wait()
            starts.append(time.monotonic())
        return starts

    began = time.monotonic()
    starts = asyncio.run(two_starts())
    assert starts[0] - began >= 0.1  # held back before its start
    assert pacer.not_before == 0.0  # and free again once the hold has passed


def test_nothing_left_holds_the_tier_until_the_reset() -> None:
    pacer = Pacer()
    pacer.observe(_headers(100, 0, 1.5), now=100.0)
    assert pacer.not_before == pytest.approx(101.5, abs=0.05)


def test_limit_names_map_to_tiers() -> None:
    names = {in_flight_name("haiku"), per_minute_name("sonnet"), "someone-elses-limit"}
    limits = FleetLimits.from_names(names)
    assert limits.in_flight == {"haiku"} and limits.per_minute == {"sonnet"}


def test_a_per_minute_limit_never_lets_a_window_see_more_than_the_limit() -> None:
    spec = per_minute_spec("haiku", 50)
    assert spec.limit + spec.slot_decay_per_second * 60 == pytest.approx(50)  # type: ignore[operator]
    assert per_minute_spec("opus", 1).limit == 1


def test_bad_limits_say_what_to_write() -> None:
    assert _pairs(["haiku=50", "opus=2"], "--rpm") == {"haiku": 50, "opus": 2}
    for bad in ("haiku", "gpt=5", "haiku=0", "haiku=-1", "haiku=x"):
        with pytest.raises(BadLimit, match="TIER=N"):
            _pairs([bad], "--rpm")


def test_the_fake_answers_429_with_retry_after_past_its_per_model_limit() -> None:
    body = {
        "model": "claude-haiku-5-5",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "Role: DEV"}],
    }
    with (
        FakeMessagesAPI(requests_per_window={"haiku": 2}, window_s=30) as fake,
        httpx.Client(base_url=fake.base_url, timeout=10) as http,
    ):
        answers = [http.post("/v1/messages", json=body) for _ in range(3)]
        other = http.post("/v1/messages", json={**body, "model": "claude-opus-5-5"})
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[0].headers["anthropic-ratelimit-requests-remaining"] == "1"
    assert answers[1].headers["anthropic-ratelimit-requests-remaining"] == "0"
    refused = answers[2]
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(refused.headers["retry-after"]) <= 30
    assert refused.headers["anthropic-ratelimit-requests-limit"] == "2"
    assert other.status_code == 200  # another model family has its own limit (none here)
    assert fake.rate_limited == 1 and fake.request_rate("haiku") == 2


def test_limits_apply_show_and_clear_on_the_server(capsys: pytest.CaptureFixture[str]) -> None:
    from tasks.cli.limits import main
    from tasks.cli.main import main as agentmill
    from tasks.model.limits import fleet_limits, forget_limits

    try:
        assert agentmill(["limits", "apply", "--rpm", "haiku=50", "--in-flight", "haiku=4"]) == 0
        out = capsys.readouterr().out
        assert "created agentmill-haiku-per-minute: limit 5, refills 0.75/s" in out
        assert "created agentmill-haiku-in-flight: limit 4" in out
        assert main(["apply", "--in-flight", "haiku=6"]) == 0
        assert "updated agentmill-haiku-in-flight: limit 6" in capsys.readouterr().out
        forget_limits()
        limits = asyncio.run(fleet_limits())
        assert limits.in_flight == {"haiku"} and limits.per_minute == {"haiku"}
        assert main(["show"]) == 0
        assert "agentmill-haiku-in-flight: limit 6, 0 in use" in capsys.readouterr().out
    finally:
        assert main(["clear"]) == 0
        forget_limits()
    assert "deleted agentmill-haiku-in-flight" in capsys.readouterr().out
    assert asyncio.run(fleet_limits()) == FleetLimits()
    assert main(["apply"]) == 1
    assert "nothing to apply" in capsys.readouterr().err


def test_with_no_limit_configured_a_request_takes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    import prefect.concurrency.asyncio as prefect_concurrency

    from tasks.model.limits import forget_limits, request_slot

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a limit was taken with none configured")

    monkeypatch.setattr(prefect_concurrency, "concurrency", refuse)
    monkeypatch.setattr(prefect_concurrency, "rate_limit", refuse)
    forget_limits()

    async def three_requests() -> None:
        for _ in range(3):
            async with request_slot("haiku"):
                pass

    asyncio.run(three_requests())


def test_a_build_reads_the_limits_once_not_once_per_phase_subflow(
    tmp_path: Path, unique_idea: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keyed by flow run, each phase subflow read them again: 5 reads of 60-130 ms a build."""
    import uuid

    from blocks.team import AgentTeam
    from flows.build_app import build_app
    from tasks.build.offline_script import build_reply
    from tasks.model import limits
    from tasks.testing.teams import PLANNER_AND_BUILDER

    reads: list[float] = []
    real_read = limits._read_limits

    async def counted() -> FleetLimits:
        reads.append(time.monotonic())
        return await real_read()

    monkeypatch.setattr(limits, "_read_limits", counted)
    limits.forget_limits()
    team = f"limits-{uuid.uuid4().hex[:8]}"
    AgentTeam(roles=PLANNER_AND_BUILDER).save(team)
    with FakeMessagesAPI(script=build_reply) as api:  # the offline model takes no limits
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-api03-" + "x" * 40)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.base_url)
        result = build_app(idea=unique_idea, workdir=str(tmp_path / "app"), team=team)
    assert result.provider == "anthropic" and result.status == "completed"
    assert len(result.commits) == 2  # two phase subflows
    assert len(reads) == 1
