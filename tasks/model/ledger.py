"""The prompt-cache ledger: what caching read and wrote, and what it saved, per agent and per run.

`saved_usd` compares a run with the same run without caching: the same
requests with every prompt token at the base input price. It is negative
when the cache wrote more than was read back (a write costs 1.25x or 2x the
input price). Warm-up requests are part of the totals and shown apart.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, Field

from tasks.model.pricing import Usage


class CacheLedger(BaseModel):
    """What prompt caching did for some model requests."""

    requests: int = 0
    input_tokens: int = Field(default=0, description="Prompt tokens not read from the cache.")
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    hit_ratio: float = Field(default=0.0, description="Share of prompt tokens read from cache.")
    cost_usd: float = 0.0
    uncached_cost_usd: float = Field(
        default=0.0, description="The same requests with no prompt caching."
    )
    saved_usd: float = 0.0
    warmup_requests: int = 0
    warmup_cost_usd: float = 0.0

    @classmethod
    def of(
        cls, usage: Usage, cost_usd: float, uncached_cost_usd: float, *, warmup: bool = False
    ) -> CacheLedger:
        return cls(
            requests=usage.requests,
            input_tokens=usage.input_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            hit_ratio=round(usage.hit_ratio, 4),
            cost_usd=round(cost_usd, 8),
            uncached_cost_usd=round(uncached_cost_usd, 8),
            saved_usd=round(uncached_cost_usd - cost_usd, 8),
            warmup_requests=usage.requests if warmup else 0,
            warmup_cost_usd=round(cost_usd, 8) if warmup else 0.0,
        )

    @classmethod
    def total(cls, parts: Iterable[CacheLedger]) -> CacheLedger:
        out = cls()
        for part in parts:
            out.requests += part.requests
            out.input_tokens += part.input_tokens
            out.cache_read_tokens += part.cache_read_tokens
            out.cache_write_tokens += part.cache_write_tokens
            out.cost_usd += part.cost_usd
            out.uncached_cost_usd += part.uncached_cost_usd
            out.warmup_requests += part.warmup_requests
            out.warmup_cost_usd += part.warmup_cost_usd
        prompt = out.input_tokens + out.cache_read_tokens + out.cache_write_tokens
        out.hit_ratio = round(out.cache_read_tokens / prompt, 4) if prompt else 0.0
        out.cost_usd = round(out.cost_usd, 6)
        out.uncached_cost_usd = round(out.uncached_cost_usd, 6)
        out.saved_usd = round(out.uncached_cost_usd - out.cost_usd, 6)
        out.warmup_cost_usd = round(out.warmup_cost_usd, 6)
        return out

    def summary(self) -> str:
        """One line: how much of the prompt came from the cache, and what that saved."""
        return (
            f"cache {self.hit_ratio:.0%} of input read ({self.cache_read_tokens} read, "
            f"{self.cache_write_tokens} written), saved ${self.saved_usd:.4f} of "
            f"${self.uncached_cost_usd:.4f} uncached"
        )
