"""The benchmark's Messages API: the test fake, with seeded tier latencies per tagged run.

One fake serves every run of a benchmark; each run's base URL carries a tag
(`/runs/{tag}`), and the harness registers per tag which latency model that
run gets (the tiered one, or zero for the overhead runs). What the fake
served per tag (requests, latencies, tokens, in-flight peaks) is the ground
truth the report is computed from: the runs' own numbers are not trusted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

from benchmarks.latency import TierLatency
from tasks.build.offline_script import build_reply
from tasks.model.warmup import is_warm_up
from tasks.testing.messages_api import FakeMessagesAPI, SeenRequest, role_of, step_of, tier_of

WARM_UP_SHARE = 0.1


@dataclass
class TagStats:
    """What the fake served to one tagged run."""

    requests: int = 0
    warmup_requests: int = 0  # of `requests`: agentmill's shared-prefix warm-ups
    by_role: dict[str, int] = field(default_factory=dict)
    latency_by_role: dict[str, float] = field(default_factory=dict)
    served_by_role: dict[str, float] = field(default_factory=dict)
    input_tokens: int = 0
    output_tokens: int = 0
    peak_in_flight: dict[str, int] = field(default_factory=dict)
    requests_by_tier: dict[str, int] = field(default_factory=dict)
    first_request_at: float | None = None  # time.monotonic(), system-wide on Linux
    last_reply_at: float | None = None  # when the last reply's latency ended

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "warmup_requests": self.warmup_requests,
            "requests_by_role": self.by_role,
            "requests_by_tier": self.requests_by_tier,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "peak_in_flight_by_tier": self.peak_in_flight,
        }


class BenchMessagesAPI(FakeMessagesAPI):
    """`with BenchMessagesAPI() as api:`; `api.register(tag, latency)` before a run uses it."""

    def __init__(self) -> None:
        # Documents only: the orchestration runs measure scheduling, not sandboxed test runs
        # (benchmarks/verification.py measures those).
        super().__init__(script=partial(build_reply, project=False))
        self._latency_by_tag: dict[str, TierLatency] = {}

    def register(self, tag: str, latency: TierLatency) -> str:
        """Serve `tag` with `latency`; returns the base URL the run must use."""
        self._latency_by_tag[tag] = latency
        return self.tagged_url(tag)

    def delay_for(self, body: dict[str, Any], tag: str | None) -> float:
        model = tag and self._latency_by_tag.get(tag)
        if not model:
            return 0.0
        delay = model.delay(tier_of(str(body.get("model", ""))), role_of(body), step_of(body))
        # A warm-up's one-token reply takes its time to first token, a small part of a
        # turn's time (the tiers' ranges model turns that write hundreds of tokens).
        return WARM_UP_SHARE * delay if is_warm_up(body) else delay

    def stats(self, tag: str) -> TagStats:
        seen: list[SeenRequest] = self.requests_for(tag)
        out = TagStats(requests=len(seen), peak_in_flight=self.peak_in_flight(tag))
        for r in seen:
            out.requests_by_tier[r.tier] = out.requests_by_tier.get(r.tier, 0) + 1
            out.input_tokens += r.input_tokens
            out.output_tokens += r.output_tokens
            if r.warm_up:  # the run's request, not any role's
                out.warmup_requests += 1
                continue
            role = r.role or "?"
            out.by_role[role] = out.by_role.get(role, 0) + 1
            out.latency_by_role[role] = out.latency_by_role.get(role, 0.0) + r.latency_s
            out.served_by_role[role] = out.served_by_role.get(role, 0.0) + r.served_s
        if seen:
            out.first_request_at = min(r.at for r in seen)
            out.last_reply_at = max(r.at + r.served_s for r in seen)
        return out
