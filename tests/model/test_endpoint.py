"""Credentials by block name, loaded when a run starts: the block, else the environment.

Against the session's real Prefect server. The default names (`anthropic`,
`github`) are never saved here: other tests run with the environment's key,
and a block of that name would win over it.
"""

from __future__ import annotations

import uuid

import pytest

from blocks.credentials import AnthropicCredentials, GitHubCredentials
from tasks.common.credentials import CredentialsBlockMissing
from tasks.issues.github import GitHubError, resolve_github
from tasks.model.endpoint import aresolve_endpoint

KEY = "sk-ant-api03-endpoint-test-0000000000000000"
ROTATED = "sk-ant-api03-endpoint-test-1111111111111111"
TOKEN = "ghp_ENDPOINTTEST00000000000000000000000000"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_a_missing_default_block_falls_back_to_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    offline = await aresolve_endpoint("auto")  # no `anthropic` block on this server
    assert offline.provider == "offline"
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    claude = await aresolve_endpoint("auto")
    assert claude.provider == "anthropic" and claude.key_source == "ANTHROPIC_API_KEY"
    assert claude.api_key is not None and claude.api_key.get_secret_value() == KEY
    assert KEY not in repr(claude)


async def test_a_saved_block_wins_and_a_rotated_key_is_read_by_the_next_resolution(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-from-the-environment")
    name = unique("anthropic")
    await AnthropicCredentials(api_key=KEY, base_url="http://127.0.0.1:9/proxy").asave(name)
    endpoint = await aresolve_endpoint("auto", name)
    assert endpoint.api_key is not None and endpoint.api_key.get_secret_value() == KEY
    assert endpoint.base_url == "http://127.0.0.1:9/proxy"
    assert endpoint.key_source == f"block {name!r}"
    await AnthropicCredentials(api_key=ROTATED).asave(name, overwrite=True)
    rotated = await aresolve_endpoint("auto", name)
    assert rotated.api_key is not None and rotated.api_key.get_secret_value() == ROTATED


async def test_a_block_named_on_purpose_must_exist_unless_the_run_is_offline() -> None:
    with pytest.raises(CredentialsBlockMissing, match=r"no .* block named 'no-such-key'.*save"):
        await aresolve_endpoint("auto", "no-such-key")
    assert (await aresolve_endpoint("offline", "no-such-key")).provider == "offline"


async def test_an_empty_name_means_the_environment_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    endpoint = await aresolve_endpoint("anthropic", "  ")
    assert endpoint.key_source == "ANTHROPIC_API_KEY"


async def test_github_takes_its_block_else_its_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.setenv("GITHUB_API_URL", "http://127.0.0.1:9/from-env")
    with pytest.raises(GitHubError, match="no GitHub token: set GITHUB_TOKEN, or save"):
        await resolve_github()  # no `github` block, no token
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    from_env = await resolve_github()
    assert from_env.token.get_secret_value() == TOKEN
    assert from_env.api_url == "http://127.0.0.1:9/from-env"
    name = unique("github")
    await GitHubCredentials(token="ghp_fromblock", api_url="http://127.0.0.1:9/ghe/").asave(name)
    from_block = await resolve_github(name)
    assert from_block.token.get_secret_value() == "ghp_fromblock"
    assert from_block.api_url == "http://127.0.0.1:9/ghe"
    with pytest.raises(CredentialsBlockMissing, match="GitHubCredentials"):
        await resolve_github(unique("missing"))
