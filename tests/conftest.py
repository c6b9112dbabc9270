"""Test session setup: no network, no real keys, one Prefect server on loopback.

The environment is fixed here, before anything imports Prefect, because
Prefect reads its settings at import: nothing imported at the top of this
file may import Prefect (tasks.testing.prefect_server does not). One
`prefect server start` per session
(its services that write task runs and events to SQLite turned off) is much
faster than `prefect_test_harness()` per module, and subprocesses started by
tests (fresh-process reruns) reach it through PREFECT_API_URL.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tasks.testing.prefect_server import QUIET_OFF, PrefectServer

if TYPE_CHECKING:
    from tasks.testing.messages_api import FakeMessagesAPI

FAKE_KEY = "sk-ant-api03-fake-key-for-tests-0123456789abcdef"
assert "prefect" not in sys.modules, "conftest must set Prefect's environment before its import"
# Created now (its port and home), started by the session fixture below.
_SERVER = PrefectServer(services_off=QUIET_OFF)
for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "GITHUB_TOKEN"):
    os.environ.pop(name, None)
SERVER_ENV = {
    "PREFECT_HOME": str(_SERVER.home),
    "PREFECT_API_URL": _SERVER.api_url,
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "0.3",
    # Agent tasks run outside any flow in unit tests of the scheduler: nothing to ship.
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
    # Any model call that escapes a fake lands here and fails at once.
    "ANTHROPIC_BASE_URL": "http://127.0.0.1:9/no-real-calls",
}
os.environ.update(SERVER_ENV)


@pytest.fixture(scope="session", autouse=True)
def prefect_server() -> Iterator[str]:
    """Start the session's Prefect server and stop it at the end.

    Its services that write task runs and events to SQLite are off: their
    writes make concurrent flow-run creation fail with "database is locked",
    and the client then waits 2 s (see benchmarks/results.md).
    """
    with _SERVER as server:
        yield server.api_url
        _flush_prefect_workers()


def _flush_prefect_workers() -> None:
    """Ship the logs and events still queued before the server goes away.

    An async flow ends with its work (no heartbeat join, unlike a sync flow),
    so its last log lines can still be queued when the session ends.
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        worker.drain_all(timeout=10)


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeMessagesAPI]:
    """A fake Messages API on loopback, and the environment that points Claude runs at it."""
    from tasks.testing.messages_api import FakeMessagesAPI  # imports Prefect: after the env

    with FakeMessagesAPI() as fake:
        monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.base_url)
        yield fake


@pytest.fixture
def unique_idea(request: pytest.FixtureRequest) -> str:
    """An idea no other test uses, so the content-keyed cache starts cold."""
    return f"A todo app with React and FastAPI ({request.node.nodeid}, {time.time_ns()})"
