"""A first run on a fresh machine: the README's first command with a brand-new PREFECT_HOME.

No PREFECT_API_URL, so the run starts Prefect's embedded server, whose first
start creates and migrates its database: on a loaded 2-core machine that
took longer than Prefect's 20 s default and the run died. The command gives
it time (unless the user set their own limit), says what the wait is, and a
server that does not come up is one line that says what to do.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.cli.prefect_api import EMBEDDED_STARTUP_S, startup_timeout
from tasks.testing.repos import CHECKOUT, git


def readme_first_command() -> list[str]:
    """The first line of the README's first bash block, after its `pip install ... &&`."""
    readme = (CHECKOUT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", readme, re.S)
    assert block is not None
    first = block.group(1).splitlines()[0]
    install, _, command = first.partition(" && ")
    assert install.startswith("pip install"), first
    argv = shlex.split(command)
    if argv[0] == "python":
        return [sys.executable, *argv[1:]]
    return [str(Path(sys.executable).parent / argv[0]), *argv[1:]]  # the console script


def fresh_machine(tmp_path: Path, **settings: str) -> dict[str, str]:
    """This environment as a new user has it: no Prefect server configured, an empty home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    # Telemetry stays off: no test reaches the internet.
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false"
    )
    env.update(settings)
    return env


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_the_readmes_first_command_completes_on_a_fresh_prefect_home(tmp_path: Path) -> None:
    argv = readme_first_command()
    proc = subprocess.run(
        argv, cwd=tmp_path, env=fresh_machine(tmp_path), capture_output=True, text=True, timeout=540
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert "starting a local Prefect server; the first start sets up its database" in proc.stdout
    assert "local Prefect server ready" in proc.stdout
    assert "Traceback" not in output
    workdir = tmp_path / argv[argv.index("--workdir") + 1]
    assert git(workdir, "rev-list", "--count", "HEAD") == "5"
    assert (workdir / ".tasks" / "report.json").is_file()


def test_a_server_that_does_not_start_is_one_line_that_says_what_to_do(tmp_path: Path) -> None:
    """The user's own (too short) limit is kept, not raised; the failure is one clear line."""
    env = fresh_machine(tmp_path, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="1")
    proc = subprocess.run(
        [*readme_first_command()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(
        "agentmill: error: the local Prefect server did not answer within 1s "
        "(your PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS; its log: "
    )
    assert "prefect server start" in line and "PREFECT_API_URL=http://127.0.0.1:4200/api" in line
    log = Path(line.split("its log: ")[1].split(")")[0])
    assert log.is_file()  # the server's own output is there, not on the terminal
    assert not (tmp_path / "out").exists()  # nothing was started


def test_agentmill_gives_the_embedded_server_time_unless_the_user_said() -> None:
    assert startup_timeout() == (EMBEDDED_STARTUP_S, False)
