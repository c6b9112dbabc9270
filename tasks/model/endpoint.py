"""Where model requests go: Claude with a key, or the offline model with a script.

A flow resolves its endpoint once (a key from the named credentials block or
ANTHROPIC_API_KEY means Claude) and makes it current with `use_endpoint`;
agent tasks find it there. The key travels in the endpoint, never as a task
parameter or in a cache key, and `repr` never shows it (SecretStr).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import SecretStr

from tasks.common.context import Scoped
from tasks.common.errors import AgentmillError

ProviderChoice = Literal["auto", "anthropic", "offline"]
Provider = Literal["anthropic", "offline"]
# An offline script: the Messages API request (a dict) in, the assistant message out.
OfflineScript = Callable[[dict[str, Any]], dict[str, Any]]


class ModelCallError(AgentmillError, RuntimeError):
    """A model request failed for good, or cannot be made; the message says what to do."""


@dataclass(frozen=True)
class Endpoint:
    """Where model requests go. `offline_script` answers when the provider is offline."""

    provider: Provider
    base_url: str | None = None
    api_key: SecretStr | None = field(default=None, compare=False)
    offline_script: OfflineScript | None = field(default=None, compare=False, repr=False)

    @property
    def script_name(self) -> str:
        script = self.offline_script
        return f"{script.__module__}.{script.__qualname__}" if script else ""


_ENDPOINT: Scoped[Endpoint | None] = Scoped("endpoint", None)


def resolve_endpoint(
    choice: ProviderChoice,
    credentials_block: str | None = None,
    offline_script: OfflineScript | None = None,
) -> Endpoint:
    """Pick the provider: a key from the named block or ANTHROPIC_API_KEY means Claude.

    Loads the block synchronously: call it from sync code (or a sync flow); async
    code awaits `aresolve_endpoint`, because Prefect's `Block.load` returns a
    coroutine inside an async flow.
    """
    creds = None
    if credentials_block:
        from blocks.credentials import AnthropicCredentials

        try:
            creds = AnthropicCredentials.load(credentials_block, _sync=True)  # type: ignore[call-arg]
        except ValueError as exc:
            raise _no_block(credentials_block) from exc
    return _endpoint(choice, creds, offline_script)


async def aresolve_endpoint(
    choice: ProviderChoice,
    credentials_block: str | None = None,
    offline_script: OfflineScript | None = None,
) -> Endpoint:
    """`resolve_endpoint` for async code: the credentials block is loaded with `aload`."""
    creds = None
    if credentials_block:
        from blocks.credentials import AnthropicCredentials

        try:
            creds = await AnthropicCredentials.aload(credentials_block)
        except ValueError as exc:
            raise _no_block(credentials_block) from exc
    return _endpoint(choice, creds, offline_script)


def _no_block(name: str) -> ModelCallError:
    return ModelCallError(
        f"no AnthropicCredentials block named {name!r}; create it in the "
        "Prefect UI (Blocks) or with AnthropicCredentials(api_key=...).save(name)"
    )


def _endpoint(choice: ProviderChoice, creds: Any, offline_script: OfflineScript | None) -> Endpoint:
    key: str | None = None
    base_url = os.environ.get("ANTHROPIC_BASE_URL") or None
    if creds is not None:
        key = creds.api_key.get_secret_value()
        base_url = creds.base_url or base_url
    else:
        key = os.environ.get("ANTHROPIC_API_KEY") or None
    if choice == "offline" or (choice == "auto" and not key):
        return Endpoint(provider="offline", offline_script=offline_script)
    if not key:
        raise ModelCallError(
            "provider 'anthropic' needs an API key: set ANTHROPIC_API_KEY, or name an "
            "AnthropicCredentials block in the credentials parameter, or use provider 'offline'"
        )
    return Endpoint(provider="anthropic", base_url=base_url, api_key=SecretStr(key))


@contextmanager
def use_endpoint(endpoint: Endpoint) -> Iterator[None]:
    """Make `endpoint` the one agent tasks in this context talk to."""
    with _ENDPOINT.use(endpoint):
        yield


def current_endpoint(provider: Provider) -> Endpoint:
    endpoint = _ENDPOINT.get()
    if endpoint is not None and endpoint.provider == provider:
        return endpoint
    return resolve_endpoint(provider)


def announce(
    endpoint: Endpoint, log: logging.Logger | logging.LoggerAdapter[Any], work: str
) -> None:
    """Say which model answers; the offline model says so loudly, with what it writes instead.

    `work` names the placeholder the offline model produces, e.g. "placeholder
    documents, not a real app".
    """
    if endpoint.provider == "offline":
        log.warning(
            "OFFLINE MODEL: no Anthropic API key, so the team runs on agentmill's scripted "
            "offline model and writes %s. Set ANTHROPIC_API_KEY (or name an "
            "AnthropicCredentials block) to run it on Claude.",
            work,
        )
    else:
        log.info("provider anthropic at %s", endpoint.base_url or "the public API")
