"""What model calls cost: the price table, token usage, and the sum of the two.

Prices are USD per million tokens, per model id; the offline model costs
nothing, and a model missing from the table is reported as free with a
warning (so a new model never breaks a run, and the gap is visible).
"""

from __future__ import annotations

from dataclasses import dataclass

from anthropic.types import Message
from pydantic import BaseModel

from tasks.common.logs import run_logger
from tasks.model.endpoint import Provider


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float
    cache_write: float
    cache_read: float


_OPUS_4_5 = Price(5.0, 25.0, 6.25, 0.50)
PRICES: dict[str, Price] = {
    "claude-opus-5-5": Price(4.0, 20.0, 5.0, 0.20),
    "claude-sonnet-5-5": Price(2.0, 10.0, 2.5, 0.10),
    "claude-haiku-5-5": Price(0.10, 0.50, 0.125, 0.01),
    "claude-opus-5": _OPUS_4_5,
    "claude-opus-4-8": _OPUS_4_5,
    "claude-opus-4-7": _OPUS_4_5,
    "claude-opus-4-6": _OPUS_4_5,
    "claude-opus-4-5": _OPUS_4_5,
    "claude-sonnet-5": Price(2.0, 10.0, 2.5, 0.20),
    "claude-sonnet-4-6": Price(3.0, 15.0, 3.75, 0.30),
    "claude-sonnet-4-5": Price(3.0, 15.0, 3.75, 0.30),
    "claude-haiku-4-5": Price(1.0, 5.0, 1.25, 0.10),
}


class Usage(BaseModel):
    """Tokens and requests of one agent run (or a sum of them)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    requests: int = 0

    @property
    def total_tokens(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_read_tokens
            + self.cache_write_tokens
        )

    def add_message(self, message: Message) -> None:
        u = message.usage
        self.input_tokens += u.input_tokens
        self.output_tokens += u.output_tokens
        self.cache_read_tokens += u.cache_read_input_tokens or 0
        self.cache_write_tokens += u.cache_creation_input_tokens or 0


def cost_usd(model: str, usage: Usage, provider: Provider) -> float:
    """What the usage cost; the offline model costs nothing, an unpriced model logs a warning."""
    if provider == "offline":
        return 0.0
    price = PRICES.get(model)
    if price is None:
        run_logger("agentmill.llm").warning(
            "no price known for model %s; its cost is reported as 0", model
        )
        return 0.0
    return (
        usage.input_tokens * price.input
        + usage.output_tokens * price.output
        + usage.cache_write_tokens * price.cache_write
        + usage.cache_read_tokens * price.cache_read
    ) / 1_000_000
