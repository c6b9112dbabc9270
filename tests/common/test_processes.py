"""The one subprocess runner: exit codes, a given environment only, timeouts, capped output."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from tasks.common.processes import run_process

PY = sys.executable


async def test_output_and_exit_code_come_back_and_only_the_given_environment_is_seen(
    tmp_path: Path, monkeypatch: object
) -> None:
    os.environ["AGENTMILL_TEST_SECRET"] = "do-not-pass"
    try:
        done = await run_process(
            [PY, "-c", "import os,sys; print(sorted(os.environ)); sys.exit(3)"],
            cwd=tmp_path,
            env={"PATH": os.environ["PATH"], "ONLY_THIS": "1"},
            timeout_s=30,
        )
    finally:
        del os.environ["AGENTMILL_TEST_SECRET"]
    assert done.exit_code == 3 and not done.timed_out
    assert "ONLY_THIS" in done.stdout and "AGENTMILL_TEST_SECRET" not in done.stdout


async def test_a_timeout_kills_the_command_and_everything_it_started(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = (
        "import os, subprocess, sys, time\n"
        f"child = subprocess.Popen([{PY!r}, '-c', 'import time; time.sleep(60)'])\n"
        "escaped = subprocess.Popen("
        f"[{PY!r}, '-c', 'import time; time.sleep(60)'], start_new_session=True)\n"
        f"open({str(pids)!r}, 'w').write(f'{{child.pid}} {{escaped.pid}}')\n"
        "time.sleep(60)\n"
    )
    started = time.monotonic()
    done = await run_process(
        [PY, "-c", script], cwd=tmp_path, env={"PATH": os.environ["PATH"]}, timeout_s=2
    )
    assert done.timed_out and done.exit_code is None
    assert time.monotonic() - started < 15
    for pid in map(int, pids.read_text().split()):
        for _ in range(50):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            if Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z"):
                break  # a zombie waiting for its reaper: dead
            time.sleep(0.1)
        else:
            raise AssertionError(f"process {pid} outlived the timeout")


async def test_output_past_the_cap_is_dropped_from_the_front(tmp_path: Path) -> None:
    done = await run_process(
        [PY, "-c", "import sys; sys.stdout.write('x' * 5_000_000 + 'THE END')"],
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"]},
        timeout_s=30,
        max_output_bytes=100_000,
    )
    assert done.exit_code == 0 and len(done.stdout) == 100_000
    assert done.stdout.endswith("THE END") and done.dropped_bytes == 5_000_007 - 100_000
