"""deployments.serve: every flow, with the triage schedule active only for a named repository."""

from __future__ import annotations

import pytest

from deployments.serve import TRIAGE_CRON, deployments


def test_serve_offers_every_flow_with_its_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTMILL_REPO", raising=False)
    by_name = {d.name: d for d in deployments()}
    assert set(by_name) == {"build-app", "triage-issues"}
    triage = by_name["triage-issues"]
    assert [s.schedule.cron for s in triage.schedules] == [TRIAGE_CRON]  # type: ignore[union-attr]
    assert triage.paused is True
    assert triage.concurrency_limit == 1  # one run at a time on the shared clone

    monkeypatch.setenv("AGENTMILL_REPO", "octo/app")
    triage = {d.name: d for d in deployments()}["triage-issues"]
    assert triage.paused is False and triage.parameters["repo"] == "octo/app"
