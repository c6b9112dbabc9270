"""A value that a block of code makes current for everything it calls, tasks included.

Flows hand run-scoped objects (the endpoint, the budget, the build, the
issue run, the run's own secrets) to the tasks and subflows they start
through context variables, not parameters: Prefect records parameters, and
these hold clients, secrets or live state. Prefect copies the context into
the tasks and subflows it runs, so a value set around them reaches them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Generic, TypeVar

from tasks.common.errors import AgentmillError

T = TypeVar("T")
U = TypeVar("U")


class NotInContext(AgentmillError, RuntimeError):
    """Code that needs a run's state was called outside that run (a subflow on its own)."""


class Scoped(Generic[T]):
    """`with scoped.use(value):` makes `value` what `scoped.get()` returns inside the block."""

    def __init__(self, name: str, default: T) -> None:
        self._var: ContextVar[T] = ContextVar(f"agentmill_{name}", default=default)

    @contextmanager
    def use(self, value: T) -> Iterator[T]:
        token = self._var.set(value)
        try:
            yield value
        finally:
            self._var.reset(token)

    def get(self) -> T:
        return self._var.get()

    def require(self: Scoped[U | None], missing: str) -> U:
        """The current value; NotInContext saying `missing` when there is none."""
        value = self._var.get()
        if value is None:
            raise NotInContext(missing)
        return value
