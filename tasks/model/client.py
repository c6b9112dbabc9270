"""One pooled `AsyncAnthropic` client per (event loop, endpoint), for the offline model too.

The offline model answers through `httpx2.MockTransport` behind the same
SDK client, so an offline run goes through the same streaming and tool-loop
code as a run on Claude. The SDK's own retries are off (`max_retries=0`):
requests are retried once, in `tasks.model.stream`.
"""

from __future__ import annotations

import asyncio
import hashlib
import weakref

import anthropic
import httpx2

from tasks.model.endpoint import Endpoint
from tasks.model.offline import OFFLINE_BASE_URL, generic_reply, offline_transport

# One client per (event loop, endpoint): a pooled httpx2 client belongs to the
# loop it first ran on, and a process may run several builds one after another.
_CLIENTS: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, str | None, str, str], anthropic.AsyncAnthropic]
] = weakref.WeakKeyDictionary()


def get_client(endpoint: Endpoint) -> anthropic.AsyncAnthropic:
    loop = asyncio.get_running_loop()
    key_id = ""
    if endpoint.api_key is not None:
        key_id = hashlib.sha256(endpoint.api_key.get_secret_value().encode()).hexdigest()
    slot = (endpoint.provider, endpoint.base_url, key_id, endpoint.script_name)
    clients = _CLIENTS.setdefault(loop, {})
    if slot not in clients:
        clients[slot] = _new_client(endpoint)
    return clients[slot]


def _new_client(endpoint: Endpoint) -> anthropic.AsyncAnthropic:
    if endpoint.provider == "offline":
        transport = offline_transport(endpoint.offline_script or generic_reply)
        return anthropic.AsyncAnthropic(
            api_key="offline-model-no-key",
            base_url=OFFLINE_BASE_URL,
            max_retries=0,
            http_client=httpx2.AsyncClient(transport=transport),
        )
    assert endpoint.api_key is not None
    return anthropic.AsyncAnthropic(
        api_key=endpoint.api_key.get_secret_value(),
        base_url=endpoint.base_url,
        max_retries=0,  # retries happen in `stream_message`, once
        http_client=httpx2.AsyncClient(
            limits=httpx2.Limits(max_connections=100, max_keepalive_connections=50),
            timeout=httpx2.Timeout(600.0, connect=10.0),
        ),
    )
