"""Running the async body of a sync flow, with or without an event loop already running."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion from sync code; a running loop gets it in a helper thread.

    The thread runs in a copy of this context, so a flow-run context survives and
    subflows started inside keep their parent.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        running = False  # not returned from here: errors in `coro` would chain to this one
    else:
        running = True
    if not running:
        return asyncio.run(coro)
    context = contextvars.copy_context()
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(context.run, asyncio.run, coro).result()
