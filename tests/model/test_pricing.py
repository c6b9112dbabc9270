"""Prices: 5-minute and 1-hour cache writes, reads, Haiku 5.5's long-prompt rate, the worst case."""

from __future__ import annotations

import pytest

from tasks.model.budget import call_estimate
from tasks.model.caching import min_cacheable_tokens
from tasks.model.pricing import Usage, cost_usd, price_of
from tasks.model.stream import ModelRequest


def test_each_kind_of_token_has_its_price() -> None:
    usage = Usage(
        input_tokens=1_000,
        output_tokens=500,
        cache_read_tokens=10_000,
        cache_write_tokens=3_000,
        cache_write_1h_tokens=1_000,
    )
    # Opus 5.5: $4 in, $20 out, $5 5-minute write, $8 1-hour write, $0.20 read (per MTok).
    expected = (1_000 * 4 + 500 * 20 + 2_000 * 5 + 1_000 * 8 + 10_000 * 0.20) / 1e6
    assert cost_usd("claude-opus-5-5", usage, "anthropic") == pytest.approx(expected)
    assert cost_usd("claude-opus-5-5", usage, "offline") == 0.0
    uncached = usage.without_cache()
    assert uncached.input_tokens == 14_000 and uncached.cache_read_tokens == 0
    assert cost_usd("claude-opus-5-5", uncached, "anthropic") == pytest.approx(
        (14_000 * 4 + 500 * 20) / 1e6
    )


def test_the_cache_multipliers_of_the_default_tiers() -> None:
    for model, read_share in (
        ("claude-opus-5-5", 0.05),
        ("claude-sonnet-5-5", 0.05),
        ("claude-haiku-5-5", 0.1),
    ):
        price = price_of(model)
        assert price is not None
        assert price.cache_write == pytest.approx(1.25 * price.input)
        assert price.cache_write_1h == pytest.approx(2 * price.input)
        assert price.cache_read == pytest.approx(read_share * price.input)
        assert min_cacheable_tokens(model) == 512


def test_a_haiku_5_5_prompt_over_100k_tokens_is_billed_at_the_higher_rate() -> None:
    short = Usage(input_tokens=60_000, cache_read_tokens=40_000, output_tokens=1_000)
    long = Usage(input_tokens=60_001, cache_read_tokens=40_000, output_tokens=1_000)
    assert cost_usd("claude-haiku-5-5", short, "anthropic") == pytest.approx(
        (60_000 * 0.10 + 40_000 * 0.01 + 1_000 * 0.50) / 1e6
    )
    assert cost_usd("claude-haiku-5-5", long, "anthropic") == pytest.approx(
        (60_001 * 0.50 + 40_000 * 0.05 + 1_000 * 2.50) / 1e6
    )


def test_dated_ids_take_their_familys_row_and_unknown_ones_the_safe_default() -> None:
    assert price_of("claude-haiku-4-5-20251001") == price_of("claude-haiku-4-5")
    assert min_cacheable_tokens("claude-haiku-4-5-20251001") == 4096
    assert min_cacheable_tokens("claude-opus-4-7") == 2048
    assert min_cacheable_tokens("claude-opus-5") == 512  # not Opus 5.5's row by accident
    assert min_cacheable_tokens("claude-sonnet-5") == 1024
    assert price_of("claude-unknown-9") is None
    assert min_cacheable_tokens("claude-unknown-9") == 4096  # never claims a cache
    assert cost_usd("claude-unknown-9", Usage(input_tokens=10), "anthropic") == 0.0


def test_the_budget_reserves_the_dearest_way_a_prompt_can_be_billed() -> None:
    request = ModelRequest("claude-opus-5-5", ["x" * 2_999], [], [], 100, 10.0)
    tokens = (2_999 + len("[]") * 2) // 3
    assert call_estimate(request) == pytest.approx((tokens * 8.0 + 100 * 20.0) / 1e6)
