"""What an observer in the build's own process hears: the plan, every agent, each phase's end.

The command line's live view is one: it sets itself as the current watcher
around its call of the flow, and the flow hands it to the build (as an
observer of the agent graph's hooks), tells it the plan once the team is
planned, each round of a phase's checks (which no agent hook reports: the
checks are a graph step), and each phase's outcome as the phase subflow returns. Nothing here
polls, and nothing is sent anywhere: the Prefect UI has its own record
(events, the progress artifact).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tasks.agents.graph import GraphHooks
from tasks.common.context import Scoped

if TYPE_CHECKING:
    from tasks.build.phases import Build
    from tasks.build.report import CommitRecord
    from tasks.build.verify import Verification


class BuildWatcher(GraphHooks):
    """The graph's hooks (see GraphHooks), plus the build's start and each phase's end."""

    def planned(self, build: Build) -> None:
        """The team is planned and the build is about to start its phases."""

    def checking(self, phase: str, round_number: int) -> None:
        """The phase's checks started round `round_number` on its candidate tree."""

    def checked(self, phase: str, verdict: Verification) -> None:
        """The phase's checks are done: `verdict` holds this phase's rounds."""

    def phase_ended(
        self, phase: str, commit: CommitRecord | None, error: BaseException | None
    ) -> None:
        """The phase subflow returned: committed (`commit`), unchanged (both None) or failed."""


BUILD_WATCHER: Scoped[BuildWatcher | None] = Scoped("build_watcher", None)
