"""The errors of running agents: a tool call the model got wrong, an agent that failed."""

from __future__ import annotations

from tasks.common.errors import AgentmillError


class ToolError(AgentmillError, ValueError):
    """A tool call the model got wrong; the message goes back to it as an error result."""


class AgentError(AgentmillError, RuntimeError):
    """An agent could not produce an output; the message names the agent and the cause."""


class UpstreamFailed(AgentError):
    """An agent was not run because one of its dependencies failed."""
