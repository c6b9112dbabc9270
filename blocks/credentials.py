"""Credentials blocks: the Anthropic API key and the GitHub token.

Secrets live here as `SecretStr` so Prefect masks them in the UI and they never
travel as flow parameters, task arguments or cache-key inputs.
"""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr


class AnthropicCredentials(Block):
    """The key (and optionally the endpoint) agentmill uses to call Claude."""

    _block_type_name = "agentmill Anthropic Credentials"
    _block_type_slug = "agentmill-anthropic-credentials"
    _description = "An Anthropic API key, and a base URL for a proxy or a local fake."
    _documentation_url = "https://docs.anthropic.com/en/api/getting-started"  # type: ignore[assignment]

    api_key: SecretStr = Field(description="The Anthropic API key (sk-ant-...).")
    base_url: str | None = Field(
        default=None,
        description="Messages API base URL; empty means the public API or ANTHROPIC_BASE_URL.",
    )


class GitHubCredentials(Block):
    """The token and API endpoint agentmill uses for issues and pull requests."""

    _block_type_name = "agentmill GitHub Credentials"
    _block_type_slug = "agentmill-github-credentials"
    _description = "A GitHub token (repo scope) and the REST API URL (GitHub Enterprise too)."
    _documentation_url = "https://docs.github.com/en/rest/authentication"  # type: ignore[assignment]

    token: SecretStr = Field(description="A GitHub token with contents, issues and PR access.")
    api_url: str | None = Field(
        default=None,
        description="REST API base URL; empty means GITHUB_API_URL or the public API.",
    )
