"""benchmarks/cpu.py: a process tree's CPU seconds, counted once whether a child runs or has
exited and been waited for (what the fleet benchmark reads of workers and their flow runs)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from benchmarks.cpu import tree_cpu_s

BURN = (
    "import time\nend = time.process_time() + {s}\nwhile time.process_time() < end: pass\n{after}"
)


def test_a_reaped_child_and_a_running_grandchild_count_below_their_root() -> None:
    # A parent that burns 1 s in a child it waits for, then starts a grandchild-to-be that
    # burns 1 s and keeps running: both are the parent's "children", none its "own".
    inner = BURN.format(s=1.0, after="time.sleep(30)")
    outer = (
        "import subprocess, sys, time\n"
        f"subprocess.run([sys.executable, '-c', {BURN.format(s=1.0, after='')!r}], check=True)\n"
        f"p = subprocess.Popen([sys.executable, '-c', {inner!r}])\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", outer], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None and parent.stdout.readline() == "ready\n"
        deadline = time.monotonic() + 60
        while (cpu := tree_cpu_s([parent.pid]))["children"] < 2.0:
            assert time.monotonic() < deadline, cpu
            time.sleep(0.1)
        # Counted once: the reaped child's 1 s counted twice would make it 3 s or more (what
        # is above 2 s is two bare interpreters' start-up, tens of ms of CPU each).
        assert cpu["children"] < 2.8
        assert cpu["own"] < cpu["children"]
    finally:
        parent.kill()
        parent.wait()


def test_a_process_that_is_gone_counts_nothing() -> None:
    proc = subprocess.run([sys.executable, "-c", "pass"], check=True)
    assert proc.returncode == 0
    gone = max(int(p) for p in os.listdir("/proc") if p.isdigit()) + 100_000
    assert tree_cpu_s([gone]) == {"own": 0.0, "children": 0.0}
