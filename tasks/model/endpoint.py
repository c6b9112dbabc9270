"""Where model requests go: Claude with a key, or the offline model with a script.

A flow resolves its endpoint once, when its run starts (a key from the named
credentials block, else ANTHROPIC_API_KEY, means Claude) and makes it current
with `use_endpoint`; agent tasks find it there. The key travels in the
endpoint, never as a task parameter or in a cache key, and `repr` never shows
it (SecretStr).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import SecretStr

from blocks.credentials import AnthropicCredentials
from tasks.common.context import Scoped
from tasks.common.credentials import DEFAULT_ANTHROPIC_BLOCK, load_credentials
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
    # Where the key came from ("block 'anthropic'", "ANTHROPIC_API_KEY"): never the key itself.
    key_source: str = field(default="", compare=False)

    @property
    def script_name(self) -> str:
        script = self.offline_script
        return f"{script.__module__}.{script.__qualname__}" if script else ""


_ENDPOINT: Scoped[Endpoint | None] = Scoped("endpoint", None)


def resolve_endpoint(
    choice: ProviderChoice, offline_script: OfflineScript | None = None
) -> Endpoint:
    """Pick the provider from the environment alone: ANTHROPIC_API_KEY means Claude.

    For code outside a flow (an agent task run on its own); flows await
    `aresolve_endpoint`, which looks at the named credentials block first.
    """
    return _endpoint(choice, None, "", offline_script)


async def aresolve_endpoint(
    choice: ProviderChoice,
    credentials_block: str = DEFAULT_ANTHROPIC_BLOCK,
    offline_script: OfflineScript | None = None,
) -> Endpoint:
    """Pick the provider at run time: the named block's key, else ANTHROPIC_API_KEY, else offline.

    The block is loaded now, not when a deployment is made (see
    tasks.common.credentials): a key saved or rotated in the block is used by
    the next run. `offline` looks nothing up.
    """
    creds = None
    if choice != "offline":
        creds = await load_credentials(
            AnthropicCredentials, credentials_block, default_name=DEFAULT_ANTHROPIC_BLOCK
        )
    return _endpoint(choice, creds, credentials_block.strip(), offline_script)


def _endpoint(
    choice: ProviderChoice,
    creds: AnthropicCredentials | None,
    block_name: str,
    offline_script: OfflineScript | None,
) -> Endpoint:
    key: str | None = None
    base_url = os.environ.get("ANTHROPIC_BASE_URL") or None
    if creds is not None:
        key = creds.api_key.get_secret_value()
        base_url = creds.base_url or base_url
        source = f"block {block_name!r}"
    else:
        key = os.environ.get("ANTHROPIC_API_KEY") or None
        source = "ANTHROPIC_API_KEY"
    if choice == "offline" or (choice == "auto" and not key):
        return Endpoint(provider="offline", offline_script=offline_script)
    if not key:
        raise ModelCallError(
            "provider 'anthropic' needs an API key: set ANTHROPIC_API_KEY, or save an "
            f"AnthropicCredentials block named {DEFAULT_ANTHROPIC_BLOCK!r} (or the name in the "
            "credentials parameter), or use provider 'offline'"
        )
    return Endpoint(
        provider="anthropic", base_url=base_url, api_key=SecretStr(key), key_source=source
    )


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
            "offline model and writes %s. Set ANTHROPIC_API_KEY (or save an "
            "AnthropicCredentials block named 'anthropic') to run it on Claude.",
            work,
        )
    else:
        log.info(
            "provider anthropic at %s, key from %s",
            endpoint.base_url or "the public API",
            endpoint.key_source,
        )
