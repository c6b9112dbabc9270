"""The command line's console, and where Prefect's own log lines go while a run is shown.

Prefect prints every flow and task log line to stderr through the root
logger's `PrefectConsoleHandler` (prefect/logging/logging.yml). Under the
live view that would be a flood and would tear the redrawn lines apart, so
while a run is shown those handlers are set aside and the records go
through the view's console instead, printed above it: warnings and errors
only, or everything with `--verbose`. Without a terminal, Prefect's handlers
stay and are only quieted to warnings unless `--verbose`. Logs still reach
the Prefect API (its handler is a different one), so the UI keeps them all.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

from prefect.logging.handlers import PrefectConsoleHandler
from rich.console import Console

# Where output is a file or a pipe, lines are as long as they need: a path in a table
# is never folded or cut (rich would otherwise assume 80 columns).
PLAIN_WIDTH = 240


def make_console() -> Console:
    """Output for people: a live view when stdout is a terminal, plain lines otherwise."""
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = PLAIN_WIDTH
    return console


def is_live(console: Console) -> bool:
    return console.is_terminal and not console.is_dumb_terminal


class _ThroughConsole(logging.Handler):
    """Log records printed by `console` (above a live view), formatted as Prefect formats them."""

    def __init__(self, console: Console, level: int, formatter: logging.Formatter | None) -> None:
        super().__init__(level)
        self.console = console
        if formatter is not None:
            self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            style = "red" if record.levelno >= logging.ERROR else None
            if record.levelno == logging.WARNING:
                style = "yellow"
            self.console.print(
                self.format(record), style=style, markup=False, highlight=False, soft_wrap=True
            )
        except Exception:
            self.handleError(record)


@contextlib.contextmanager
def prefect_logs(console: Console, *, verbose: bool) -> Iterator[None]:
    """While the block runs, Prefect's console lines are quiet (or, live, through `console`)."""
    root = logging.getLogger()
    ours = [h for h in root.handlers if isinstance(h, PrefectConsoleHandler)]
    level = logging.NOTSET if verbose else logging.WARNING
    if not is_live(console):
        before = [h.level for h in ours]
        for handler in ours:
            handler.setLevel(max(handler.level, level))
        try:
            yield
        finally:
            for handler, old in zip(ours, before, strict=True):
                handler.setLevel(old)
        return
    formatter = ours[0].formatter if ours else None
    through = _ThroughConsole(console, level, formatter)
    for handler in ours:
        root.removeHandler(handler)
    root.addHandler(through)
    try:
        yield
    finally:
        root.removeHandler(through)
        for handler in ours:
            root.addHandler(handler)


def status(console: Console, message: str) -> contextlib.AbstractContextManager[object]:
    """A spinner with `message` on a terminal; elsewhere the message, printed once."""
    if is_live(console):
        return console.status(message)
    console.print(message, markup=False, highlight=False)
    return contextlib.nullcontext()


def note(console: Console, message: str) -> None:
    """A quiet line for the user (the server is ready, where the report is)."""
    console.print(message, style="dim", markup=False, highlight=False, soft_wrap=True)


def error(message: str) -> None:
    """One line on stderr, as every agentmill refusal is printed."""
    print(f"agentmill: error: {message}", file=sys.stderr)
