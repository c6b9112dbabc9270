"""What model calls cost: the price table, token usage, and the sum of the two.

Prices are USD per million tokens, per model id; the offline model costs
nothing, and a model missing from the table is reported as free with a
warning (so a new model never breaks a run, and the gap is visible).

A request is priced on its own (`cost_usd` of one reply's usage), because
Claude Haiku 5.5 bills a request whose prompt is over 100,000 tokens at a
higher rate for every token of it; a sum of requests is the sum of their
prices. `Usage.without_cache()` is the same request with no prompt caching:
every prompt token at the base input price, which is what the ledger's
"saved" compares against.
"""

from __future__ import annotations

from dataclasses import dataclass

from anthropic.types import Message
from pydantic import BaseModel

from tasks.common.logs import run_logger
from tasks.model.caching import model_row
from tasks.model.endpoint import Provider


@dataclass(frozen=True)
class Price:
    """USD per million tokens; `long_prompt` applies to a request with a longer prompt."""

    input: float
    output: float
    cache_write: float  # a 5-minute cache write
    cache_write_1h: float
    cache_read: float  # a cache hit or refresh, whatever the TTL
    long_prompt_over: int | None = None  # prompt tokens (input + cache reads and writes)
    long_prompt: Price | None = None

    def for_prompt(self, prompt_tokens: int) -> Price:
        if self.long_prompt and self.long_prompt_over and prompt_tokens > self.long_prompt_over:
            return self.long_prompt
        return self

    @property
    def dearest_input(self) -> float:
        """The most an input token can cost: writing it to the cache for an hour."""
        return max(self.input, self.cache_write, self.cache_write_1h)


# Sources: the model pages of https://platform.claude.com/docs/en/models/ (opus-5-5,
# sonnet-5-5, haiku-5-5: "Pricing") and https://platform.claude.com/docs/en/about-claude/pricing
# ("Model pricing"), read through the search tool on 2026-12-02. Cache reads are 0.1x
# the input price except 0.05x on Opus 5.5 and Sonnet 5.5 (Sonnet 5.5's hits were cut
# from $0.20 to $0.10 on 2026-10-07); 5-minute writes are 1.25x, 1-hour writes 2x.
_OPUS_4_5 = Price(5.0, 25.0, 6.25, 10.0, 0.50)
_SONNET_4_5 = Price(3.0, 15.0, 3.75, 6.0, 0.30)
PRICES: dict[str, Price] = {
    "claude-opus-5-5": Price(4.0, 20.0, 5.0, 8.0, 0.20),
    "claude-sonnet-5-5": Price(2.0, 10.0, 2.5, 4.0, 0.10),
    # Haiku 5.5: these rates up to 100,000 prompt tokens, 5x them for a longer prompt.
    "claude-haiku-5-5": Price(
        0.10,
        0.50,
        0.125,
        0.20,
        0.01,
        long_prompt_over=100_000,
        long_prompt=Price(0.50, 2.50, 0.625, 1.00, 0.05),
    ),
    "claude-opus-5": _OPUS_4_5,
    "claude-opus-4-8": _OPUS_4_5,
    "claude-opus-4-7": _OPUS_4_5,
    "claude-opus-4-6": _OPUS_4_5,
    "claude-opus-4-5": _OPUS_4_5,
    "claude-sonnet-5": Price(2.0, 10.0, 2.5, 4.0, 0.20),
    "claude-sonnet-4-6": _SONNET_4_5,
    "claude-sonnet-4-5": _SONNET_4_5,
    "claude-haiku-4-5": Price(1.0, 5.0, 1.25, 2.0, 0.10),
}


def price_of(model: str) -> Price | None:
    """The model's prices (a dated id takes its family's row), or None if unpriced."""
    row = model_row(PRICES, model)
    return row if isinstance(row, Price) else None


class Usage(BaseModel):
    """Tokens and requests of one agent run (or a sum of them).

    `input_tokens` are the prompt tokens neither read from nor written to the
    cache; `cache_write_1h_tokens` is the part of `cache_write_tokens`
    written with the 1-hour TTL.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    requests: int = 0

    @property
    def prompt_tokens(self) -> int:
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.output_tokens

    @property
    def hit_ratio(self) -> float:
        """The share of prompt tokens read from the cache."""
        return self.cache_read_tokens / self.prompt_tokens if self.prompt_tokens else 0.0

    def add(self, other: Usage) -> None:
        for name in type(self).model_fields:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def add_message(self, message: Message) -> None:
        u = message.usage
        self.input_tokens += u.input_tokens
        self.output_tokens += u.output_tokens
        self.cache_read_tokens += u.cache_read_input_tokens or 0
        self.cache_write_tokens += u.cache_creation_input_tokens or 0
        if u.cache_creation is not None:
            self.cache_write_1h_tokens += u.cache_creation.ephemeral_1h_input_tokens or 0

    @classmethod
    def of(cls, message: Message) -> Usage:
        usage = cls()
        usage.add_message(message)
        return usage

    def without_cache(self) -> Usage:
        """The same tokens with no prompt caching: every prompt token a plain input token."""
        tokens = {"input_tokens": self.prompt_tokens, "output_tokens": self.output_tokens}
        return Usage(**tokens, requests=self.requests)


def cost_usd(model: str, usage: Usage, provider: Provider) -> float:
    """What one request's usage cost; the offline model costs nothing.

    An unpriced model logs a warning and costs 0. For a sum of requests the
    long-prompt rate (Haiku 5.5) cannot be told apart: price each request.
    """
    if provider == "offline":
        return 0.0
    price = price_of(model)
    if price is None:
        run_logger("agentmill.llm").warning(
            "no price known for model %s; its cost is reported as 0", model
        )
        return 0.0
    price = price.for_prompt(usage.prompt_tokens)
    write_1h = usage.cache_write_1h_tokens
    return (
        usage.input_tokens * price.input
        + usage.output_tokens * price.output
        + (usage.cache_write_tokens - write_1h) * price.cache_write
        + write_1h * price.cache_write_1h
        + usage.cache_read_tokens * price.cache_read
    ) / 1_000_000
