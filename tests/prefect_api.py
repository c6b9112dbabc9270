"""The Prefect API in tests: a real server on loopback, and reading back what a run left in it."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


@contextmanager
def running_server(port: int, env: dict[str, str], log_path: Path) -> Iterator[str]:
    """`prefect server start` on 127.0.0.1:port with `env`; yields the API URL, then stops it."""
    url = f"http://127.0.0.1:{port}/api"
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*command, "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/health", timeout=1):
                        break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(
                            f"Prefect server did not start; see {log_path}"
                        ) from None
                    time.sleep(0.3)
            yield url
        finally:
            stop(proc)


async def agentmill_events(api_url: str, since: datetime, want: int = 1) -> list[dict[str, Any]]:
    """Events named agentmill.* since `since`, once at least `want` of them are stored."""
    body = {
        "filter": {
            "occurred": {
                "since": since.isoformat(),
                "until": (datetime.now(UTC) + timedelta(minutes=5)).isoformat(),
            },
            "event": {"prefix": ["agentmill."]},
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
