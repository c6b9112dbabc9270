"""The one scheduler: topological order, dependants after dependencies, failures that spread."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from blocks.team import Role
from tasks.agents.errors import AgentError, UpstreamFailed
from tasks.agents.graph import AgentGraph, CycleError, Finished, GraphHooks, Node, topological_order
from tasks.agents.job import AgentJob, AgentSettings
from tasks.agents.scripted import not_an_agent, reply_with, turn_of
from tasks.common.git import EMPTY_TREE
from tasks.model.endpoint import Endpoint, use_endpoint


def test_topological_order_keeps_the_listing_order_and_names_a_cycle() -> None:
    deps = {"A": [], "C": ["B"], "B": ["A"], "D": []}
    assert topological_order(deps) == ["A", "B", "C", "D"]
    with pytest.raises(CycleError) as info:
        topological_order({"A": ["C"], "B": ["A"], "C": ["B"]})
    assert info.value.cycle == ["A", "C", "B", "A"]


def role(role_id: str, *deps: str) -> Role:
    return Role(id=role_id, title=role_id, phase="p", track="t", depends_on=list(deps),
                instructions=f"be {role_id}")  # fmt: skip


def script(request: dict[str, Any]) -> dict[str, Any]:
    """Every agent reads its dependencies and submits; BAD never submits."""
    turn = turn_of(request)
    if turn is None or turn.role == "BAD":
        return not_an_agent(request)
    if turn.step == 0:
        reads = [("read_output", {"role": d}) for d in turn.deps] or [("list_files", {})]
        return reply_with(request, turn, "reading", reads)
    return reply_with(request, turn, "done", [("submit", {"summary": f"{turn.role} done"})])


class Recorder(GraphHooks):
    def __init__(self) -> None:
        self.events: list[tuple[str, str, float]] = []

    def started(self, role_id: str, job: AgentJob) -> None:
        self.events.append(("started", role_id, time.perf_counter()))

    def finished(self, role_id: str, finished: Finished) -> None:
        self.events.append(("finished", role_id, time.perf_counter()))

    def failed(self, role_id: str, error: str, duration_s: float) -> None:
        self.events.append(("failed", role_id, time.perf_counter()))

    def skipped(self, role_id: str, error: str) -> None:
        self.events.append(("skipped", role_id, time.perf_counter()))


async def test_dependants_start_after_their_dependencies_and_read_them_in_order(
    tmp_path: Path,
) -> None:
    hooks = Recorder()
    graph = AgentGraph(provider="offline", idea=f"graph {uuid.uuid4()}", base_tree=EMPTY_TREE,
                       workdir=str(tmp_path), hooks=hooks)  # fmt: skip
    settings = AgentSettings(model="claude-haiku-5-5", max_turns=3)
    for r in (role("A"), role("B", "A"), role("C", "A"), role("D", "B", "C"), role("BAD"),
              role("AFTER_BAD", "BAD")):  # fmt: skip
        graph.add(Node(role=r, settings=settings))
    with pytest.raises(Exception, match="has not added"):
        graph.add(Node(role=role("ORPHAN", "NOPE"), settings=settings))

    with use_endpoint(Endpoint(provider="offline", offline_script=script)):
        results = await asyncio.gather(
            *(graph.run(r) for r in ("D", "C", "B", "A", "AFTER_BAD", "BAD")),
            return_exceptions=True,
        )
    d, c, b, a, after_bad, bad = results
    assert [o.summary for o in (a, b, c, d)] == [f"{x} done" for x in "ABCD"]  # type: ignore[union-attr]
    assert isinstance(bad, AgentError) and "did not submit" in str(bad)
    assert isinstance(after_bad, UpstreamFailed)
    assert [o.role for o in graph.upstream("D")] == ["A", "B", "C"]  # topological, not timing
    at = {(kind, r): t for kind, r, t in hooks.events}
    assert (
        at[("started", "B")] > at[("finished", "A")]
        and at[("started", "C")] > at[("finished", "A")]
    )
    assert at[("started", "D")] > max(at[("finished", "B")], at[("finished", "C")])
    assert ("skipped", "AFTER_BAD") in at and ("failed", "BAD") in at
