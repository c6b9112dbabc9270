"""Prefect Blocks of agentmill: `prefect block register -m blocks` registers them all."""

from blocks.credentials import AnthropicCredentials, GitHubCredentials
from blocks.team import DEFAULT_TIER_MODELS, PHASES, AgentTeam, Role, default_team

__all__ = [
    "DEFAULT_TIER_MODELS",
    "PHASES",
    "AgentTeam",
    "AnthropicCredentials",
    "GitHubCredentials",
    "Role",
    "default_team",
]
