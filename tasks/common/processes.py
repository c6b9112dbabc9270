"""One way to run a command: asyncio, its own session, a timeout that kills the whole tree.

Git, the review tools and the sandbox all start processes here. Each runs
in a new session (so a terminal's signals do not reach it and its process
group can be killed as one), with the environment the caller builds (never
ours by default), and its output read as it comes, with at most
`max_output_bytes` of each stream kept: the last bytes, which is where a
failure's message is. On timeout, the command and every process it started
are killed, those that left its process group included.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MAX_OUTPUT = 64 * 1024 * 1024
_DRAIN_AFTER_KILL_S = 5.0  # a grandchild that escaped may hold a pipe open; stop waiting


@dataclass
class Completed:
    """How a command ended. `exit_code` is None when it was killed at the timeout."""

    exit_code: int | None
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool = False
    dropped_bytes: int = 0  # output past the cap, not kept

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


async def run_process(
    args: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout_s: float,
    stdin: bytes | None = None,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT,
    preexec_fn: Callable[[], None] | None = None,
) -> Completed:
    """Run `args` to its end or to `timeout_s`; never raises for the command's own failure."""
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *args,
        cwd=cwd,
        env=dict(env),
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
        preexec_fn=preexec_fn,
    )
    assert proc.stdout is not None and proc.stderr is not None
    if stdin is not None and proc.stdin is not None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            proc.stdin.write(stdin)
            await proc.stdin.drain()
        proc.stdin.close()
    reads = asyncio.gather(
        _drain(proc.stdout, max_output_bytes), _drain(proc.stderr, max_output_bytes)
    )
    timed_out = False
    out = err = b""
    out_dropped = err_dropped = 0
    try:
        # The output counts too: a child that outlives the command and holds its
        # pipes open keeps it from ending.
        async with asyncio.timeout(timeout_s):
            await proc.wait()
            (out, out_dropped), (err, err_dropped) = await reads
    except TimeoutError:
        timed_out = True
        kill_tree(proc.pid)
        await proc.wait()
        try:
            async with asyncio.timeout(_DRAIN_AFTER_KILL_S):
                (out, out_dropped), (err, err_dropped) = await reads
        except TimeoutError:
            reads.cancel()
    except BaseException:  # cancelled: leave nothing running behind us
        kill_tree(proc.pid)
        reads.cancel()
        raise
    return Completed(
        exit_code=None if timed_out else proc.returncode,
        stdout=out.decode(errors="replace"),
        stderr=err.decode(errors="replace"),
        duration_s=time.perf_counter() - started,
        timed_out=timed_out,
        dropped_bytes=out_dropped + err_dropped,
    )


async def _drain(stream: asyncio.StreamReader, cap: int) -> tuple[bytes, int]:
    """Everything the stream says, keeping its last `cap` bytes; (kept, dropped)."""
    kept = bytearray()
    dropped = 0
    while chunk := await stream.read(65536):
        kept += chunk
        if len(kept) > cap:
            dropped += len(kept) - cap
            del kept[: len(kept) - cap]
    return bytes(kept), dropped


def kill_tree(pid: int) -> None:
    """SIGKILL `pid`, its process group, and every descendant still attached to it."""
    victims = [pid, *descendants(pid)]
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    for victim in victims:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(victim, signal.SIGKILL)


def descendants(pid: int) -> list[int]:
    """Every process below `pid` in the process tree (Linux /proc; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1].isdigit():
            children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found
