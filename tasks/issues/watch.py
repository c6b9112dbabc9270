"""What an observer in process_issues' own process hears: the issues listed, each one's agents.

The command line's live view sets itself as the current watcher around its
call of the flow; the flow tells it the issues it found, when each starts
and finishes, and hands it, per issue, hooks that hear that issue's agent
graph. Nothing here polls, and nothing is sent anywhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tasks.agents.graph import GraphHooks
from tasks.common.context import Scoped

if TYPE_CHECKING:
    from tasks.issues.github import Issue
    from tasks.issues.report import IssueResult


class IssuesWatcher:
    """Every method is optional; `agents` returns the hooks for one issue's agents."""

    def listed(self, repo: str, provider: str, issues: list[Issue], concurrency: int) -> None:
        """The open, labelled issues of `repo`, in the order they will be worked."""

    def issue_started(self, number: int) -> None:
        """The issue got a slot: its subflow is starting."""

    def issue_finished(self, result: IssueResult) -> None:
        """The issue is done, whatever its status."""

    def agents(self, number: int) -> GraphHooks:
        """Hooks for the agent graph of issue `number`."""
        return GraphHooks()


ISSUES_WATCHER: Scoped[IssuesWatcher | None] = Scoped("issues_watcher", None)
