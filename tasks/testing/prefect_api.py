"""The Prefect API in tests: stopping what a test started, reading back what a run left."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx


def stop(proc: subprocess.Popen[bytes], signals: tuple[int, ...] = (signal.SIGTERM,)) -> None:
    """Send each signal in turn until the process exits; kill it if none works."""
    for sig in signals:
        if proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            continue
    if proc.poll() is None:
        proc.kill()
        proc.wait()


async def agentmill_events(
    api_url: str, since: datetime, flow_run_id: str, want: int = 1
) -> list[dict[str, Any]]:
    """One flow run's events named agentmill.*, once at least `want` of them are stored.

    Filtered by the run, so that other tests' runs on the shared server can't make up the count.
    """
    body = {
        "filter": {
            "occurred": {
                "since": since.isoformat(),
                "until": (datetime.now(UTC) + timedelta(minutes=5)).isoformat(),
            },
            "event": {"prefix": ["agentmill."]},
            "related": {"id": [f"prefect.flow-run.{flow_run_id}"]},
        },
        "limit": 50,  # the API's page size
    }
    events: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=api_url, timeout=10) as http:
        for _ in range(60):
            response = await http.post("/events/filter", json=body)
            response.raise_for_status()
            page = response.json()
            events = page["events"]
            while page.get("next_page"):
                response = await http.get(page["next_page"])
                response.raise_for_status()
                page = response.json()
                events += page["events"]
            if len(events) >= want:
                return events
            await asyncio.sleep(0.5)
    raise AssertionError(f"only {len(events)} agentmill events stored, wanted {want}")
