"""The spending cap: checked before every model call, against an upper estimate of its cost.

Each call reserves what it could cost at most (its input, estimated from the
request's size, plus `max_tokens` of output) before it is sent, and settles
to the real cost after. Concurrent agents reserve against the same total, so
the run never spends past the cap, however many calls are in flight.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from tasks.common.errors import AgentmillError
from tasks.model.pricing import price_of
from tasks.model.stream import ModelRequest


class BudgetExhausted(AgentmillError, RuntimeError):
    """The next model call could cross the run's budget; nothing past it was sent."""

    def __init__(self, message: str, spent: float, limit: float) -> None:
        super().__init__(message)
        self.spent = spent
        self.limit = limit


@dataclass
class Budget:
    limit_usd: float
    spent_usd: float = 0.0
    reserved_usd: float = 0.0
    exhausted: bool = False
    _holds: dict[int, float] = field(default_factory=dict)

    @property
    def remaining_usd(self) -> float:
        return max(0.0, self.limit_usd - self.spent_usd)

    def reserve(self, who: str, estimate: float) -> int:
        """Hold `estimate` for one call, or raise BudgetExhausted if it could cross the cap."""
        if self.spent_usd + self.reserved_usd + estimate > self.limit_usd:
            self.exhausted = True
            raise BudgetExhausted(
                f"budget of ${self.limit_usd:.4f} reached: spent ${self.spent_usd:.4f}, "
                f"${self.remaining_usd:.4f} remains, and the next call ({who}, up to "
                f"${estimate:.4f}) could cross it; rerun with a larger budget_usd to "
                "continue from the cache",
                spent=self.spent_usd,
                limit=self.limit_usd,
            )
        hold = len(self._holds) + 1
        while hold in self._holds:
            hold += 1
        self._holds[hold] = estimate
        self.reserved_usd += estimate
        return hold

    def settle(self, hold: int, actual: float) -> None:
        self.reserved_usd -= self._holds.pop(hold, 0.0)
        self.spent_usd += actual


def call_estimate(request: ModelRequest) -> float:
    """The most one call can cost: its whole prompt written to the cache for an hour, at
    the long-prompt rate if it may have one, and every output token allowed."""
    price = price_of(request.model)
    if price is None:
        return 0.0
    size = sum(map(len, request.system)) + len(json.dumps(request.messages))
    input_tokens = (size + len(json.dumps(request.tools))) // 3  # generous: ~4 chars a token
    price = price.for_prompt(input_tokens)
    return (input_tokens * price.dearest_input + request.max_tokens * price.output) / 1_000_000


_BUDGET: ContextVar[Budget | None] = ContextVar("agentmill_budget", default=None)


@contextmanager
def use_budget(budget: Budget | None) -> Iterator[None]:
    token = _BUDGET.set(budget)
    try:
        yield
    finally:
        _BUDGET.reset(token)


def current_budget() -> Budget | None:
    return _BUDGET.get()
