"""Seeded model latencies per tier, so every run of a benchmark sees the same delays.

A request's delay depends only on (seed, role, step of the agent's loop) and
the tier of the model it asks for, never on arrival order or timing, so the
sequential, level-barrier and agentmill runs are served identical latencies
and their wall times differ only by how they schedule the agents.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

# Seconds per request: the ratios of real Claude latencies, scaled down about 100x.
DEFAULT_TIER_LATENCY_S: dict[str, tuple[float, float]] = {
    "opus": (0.6, 1.2),
    "sonnet": (0.2, 0.45),
    "haiku": (0.03, 0.1),
}


@dataclass(frozen=True)
class TierLatency:
    """Uniform latency per tier, drawn from a generator seeded by (seed, role, step)."""

    seed: int = 7
    ranges: dict[str, tuple[float, float]] = field(
        default_factory=lambda: dict(DEFAULT_TIER_LATENCY_S)
    )
    scale: float = 1.0  # multiplies every range: 0 for an overhead run, <1 for a smoke test

    def delay(self, tier: str, role: str | None, step: int) -> float:
        if self.scale == 0 or tier not in self.ranges:
            return 0.0
        low, high = self.ranges[tier]
        # A string seed is hashed by `random` itself, but only stably within one
        # interpreter version; hashing it here keeps the draw stable everywhere.
        digest = hashlib.sha256(f"{self.seed}/{role}/{step}".encode()).digest()
        draw = random.Random(int.from_bytes(digest[:8], "big")).uniform(low, high)
        return self.scale * draw
