"""CPU seconds of process trees, read from /proc: what each part of a fleet spends on a build.

A tree's CPU is the sum over its live processes of their own time and of
their reaped children's (`utime + stime + cutime + cstime` in
/proc/<pid>/stat, proc(5)): a child that has exited and been waited for is
counted once, in its parent's `cutime`. So a worker's tree holds the flow-run
processes it spawned, whether they still run or not, and a PostgreSQL
postmaster's tree its backends. Linux only, like the rest of the benchmark.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float, float] | None:
    """(parent pid, own CPU s, reaped children's CPU s) of one process; None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the name may hold spaces and parentheses
    # After the name: state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17).
    ppid, utime, stime, cutime, cstime = (int(fields[i]) for i in (1, 11, 12, 13, 14))
    return ppid, (utime + stime) / TICKS, (cutime + cstime) / TICKS


def _processes() -> dict[int, tuple[int, float, float]]:
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            out[int(entry.name)] = stat
    return out


def tree_cpu_s(roots: Iterable[int]) -> dict[str, float]:
    """CPU seconds of the roots themselves ("own") and of everything below them ("children")."""
    procs = _processes()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    own = below = 0.0
    for root in roots:
        if root not in procs:
            continue
        _, self_s, reaped_s = procs[root]
        own += self_s
        below += reaped_s
        stack = list(children.get(root, []))
        while stack:
            pid = stack.pop()
            _, self_s, reaped_s = procs[pid]
            below += self_s + reaped_s
            stack.extend(children.get(pid, []))
    return {"own": own, "children": below}
