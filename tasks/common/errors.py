"""The one base of every error agentmill raises on purpose.

Each subclass carries a message that says what went wrong and how to fix it,
so the command line prints it without a traceback; anything that is not an
`AgentmillError` is a bug and crashes loudly. Subclasses also derive from the
built-in type they used to be (ValueError, RuntimeError), so callers that
caught those keep working.
"""

from __future__ import annotations


class AgentmillError(Exception):
    """An error whose message says what to fix; raised by agentmill, never by a bug."""
