"""The README's first command, timed from process start: to its first model request, to its summary.

`python -m flows.build_app IDEA --workdir DIR` in a fresh process, as a user
types it, against the harness's fake Messages API at zero latency (the
offline model's requests would not be seen; these go over loopback and the
fake logs when the first arrives). The summary is the table the command
prints when the build ends (its title "agentmill build: completed",
tasks/cli/summary.py). On the embedded
server the first run of a fresh `PREFECT_HOME` migrates its database; the
harness times that case and the usual one, a database that exists.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.fake_api import BenchMessagesAPI
from benchmarks.latency import TierLatency
from tasks.testing.prefect_server import quiet_env

ROOT = Path(__file__).resolve().parents[1]
# Set for the harness's own groups, never for a command a user types.
HARNESS_ONLY = ("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS",)
DUMMY_KEY = "sk-ant-benchmark-dummy-key"


def is_summary(line: str) -> bool:
    """The summary table's title, `agentmill build: <status>`: the build has ended."""
    return line.strip().startswith("agentmill build: ")


def run_cli(
    api: BenchMessagesAPI, tag: str, env: dict[str, str], workdir: Path, timeout_s: float = 300
) -> dict[str, Any]:
    """Run the command once; seconds from its start to its first model request and summary."""
    base_url = api.register(tag, TierLatency(scale=0.0))
    command_env = {
        **os.environ,
        **quiet_env(),
        **{k: v for k, v in env.items() if k not in HARNESS_ONLY},
        "ANTHROPIC_API_KEY": DUMMY_KEY,
        "ANTHROPIC_BASE_URL": base_url,
    }
    for name in HARNESS_ONLY:
        command_env.pop(name, None)
    if "PREFECT_API_URL" not in env:
        command_env.pop("PREFECT_API_URL", None)  # the embedded server, as a user gets it
    idea = f"A todo app with React and FastAPI [bench cli {tag}]"
    began = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.build_app", idea, "--workdir", str(workdir)],
        cwd=ROOT,
        env=command_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    summary_at: list[float] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if not summary_at and is_summary(line):
                summary_at.append(time.monotonic())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    reader.join(timeout=10)
    ended = time.monotonic()
    first = api.stats(tag).first_request_at
    out: dict[str, Any] = {
        "exit_code": code,
        "process_s": round(ended - began, 2),
        "start_to_first_request_s": None if first is None else round(first - began, 2),
        "start_to_summary_s": round(summary_at[0] - began, 2) if summary_at else None,
    }
    if code != 0 or not summary_at:
        out["error"] = "".join(lines[-15:])[-2000:]
    return out
