"""The sandbox, for real: bubblewrap's isolation, and the plain fallback's limits.

Each isolation property is its own test, run with the real `bwrap`. Where
bwrap cannot run (not installed and not installable), those tests skip with
the reason; `.ci/run` installs it, so they run in CI.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.common import sandbox as sandbox_module
from tasks.common.sandbox import (
    Bubblewrap,
    PlainProcess,
    SandboxLimits,
    default_sandbox,
)

PY = sys.executable
SECRET = "sk-ant-api03-SANDBOXLEAKTEST-0123456789abcdefghij"
needs_bwrap = pytest.mark.skipif(
    sandbox_module._working_bwrap() is None,
    reason="bubblewrap (bwrap) cannot run here: install it with apt-get install bubblewrap",
)


@pytest.fixture
def bwrap() -> Bubblewrap:
    executable = sandbox_module._working_bwrap()
    assert executable is not None
    return Bubblewrap(executable)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    (copy / "pkg").mkdir(parents=True)
    (copy / "pkg" / "mod.py").write_text("VALUE = 1\n")
    return copy


@pytest.fixture
def parent_secret(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    monkeypatch.setenv("GITHUB_TOKEN", SECRET)
    return SECRET


def script(code: str) -> list[str]:
    return [PY, "-c", code]


@needs_bwrap
async def test_a_command_cannot_see_a_secret_of_the_parents_environment(
    bwrap: Bubblewrap, tree: Path, parent_secret: str
) -> None:
    result = await bwrap.run(tree, script("import os; print(sorted(os.environ.items()))"))
    assert result.status == "passed" and result.sandbox == "bwrap"
    assert parent_secret not in result.output and "ANTHROPIC_API_KEY" not in result.output
    assert "'HOME', '/sandbox/.home'" in result.output


@needs_bwrap
async def test_a_command_cannot_read_its_ancestors_environments_through_proc(
    bwrap: Bubblewrap, tree: Path, parent_secret: str
) -> None:
    code = (
        "import os\n"
        "seen = []\n"
        "for pid in [p for p in os.listdir('/proc') if p.isdigit()]:\n"
        "    try:\n"
        "        seen.append(open(f'/proc/{pid}/environ', 'rb').read().decode(errors='replace'))\n"
        "    except OSError as exc:\n"
        "        seen.append(str(exc))\n"
        "print(len(seen), seen)\n"
    )
    result = await bwrap.run(tree, script(code))
    assert result.status == "passed"
    assert parent_secret not in result.output
    assert os.environ["PREFECT_API_URL"] not in result.output  # nothing of the caller's at all


@pytest.fixture
def listener() -> Iterator[int]:
    """A loopback TCP server on the host, answering anyone who connects."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            conn.sendall(b"host secret\n")
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(timeout=2)
    server.close()


@needs_bwrap
async def test_a_command_cannot_connect_to_the_hosts_loopback(
    bwrap: Bubblewrap, tree: Path, listener: int
) -> None:
    host = socket.create_connection(("127.0.0.1", listener), timeout=2)  # the host can
    assert host.recv(64) == b"host secret\n"
    host.close()
    code = (
        "import socket\n"
        f"try:\n    socket.create_connection(('127.0.0.1', {listener}), timeout=2)\n"
        "    print('CONNECTED')\nexcept OSError as exc:\n    print('refused', exc)\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); print('own loopback ok')\n"
    )
    result = await bwrap.run(tree, script(code))
    assert "CONNECTED" not in result.output and "refused" in result.output
    assert "own loopback ok" in result.output  # tests may still start local servers


@needs_bwrap
async def test_a_command_cannot_write_to_the_hosts_home_tmp_or_workdir(
    bwrap: Bubblewrap, tree: Path, tmp_path: Path
) -> None:
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    home = Path.home()
    targets = [home / "agentmill-sandbox-probe", Path("/tmp/agentmill-sandbox-probe"),
               workdir / "probe", Path(PY).parent / "probe"]  # fmt: skip
    code = (
        "import sys\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n        open(path, 'w').write('x'); print('WROTE', path)\n"
        "    except OSError as exc:\n        print('refused', path, exc.strerror)\n"
        "open('inside.txt', 'w').write('fine')\n"
    )
    result = await bwrap.run(tree, [*script(code), *map(str, targets)])
    assert all(not path.exists() for path in targets), result.output  # the host is untouched
    # HOME, the workdir and the Python environment refuse; /tmp is a private tmpfs
    wrote = [line for line in result.output.splitlines() if line.startswith("WROTE")]
    assert wrote == ["WROTE /tmp/agentmill-sandbox-probe"], result.output
    assert (tree / "inside.txt").read_text() == "fine"  # only the copy is writable


async def _forks_and_sleeps(run: object, tree: Path) -> None:
    pids = tree / "pids"
    code = (
        "import os, subprocess, sys, time\n"
        "kids = [subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])"
        " for _ in range(3)]\n"
        "open('pids', 'w').write(' '.join(str(k.pid) for k in kids))\n"
        "time.sleep(120)\n"
    )
    started = time.monotonic()
    result = await run(tree, script(code), limits=SandboxLimits(timeout_s=2))  # type: ignore[operator]
    assert result.status == "timeout" and result.exit_code is None
    assert "no end within 2s" in result.output
    assert time.monotonic() - started < 20
    assert pids.exists()


def _sleepers_alive() -> list[str]:
    alive = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if "time.sleep(120)" in cmd and state != "Z":
            alive.append(f"{entry}: {cmd}")
    return alive


@needs_bwrap
async def test_a_command_that_forks_and_sleeps_is_killed_with_its_children(
    bwrap: Bubblewrap, tree: Path
) -> None:
    await _forks_and_sleeps(bwrap.run, tree)
    time.sleep(0.5)
    assert _sleepers_alive() == []


@needs_bwrap
async def test_output_over_the_cap_is_cut_with_a_note(bwrap: Bubblewrap, tree: Path) -> None:
    code = "import sys\nfor i in range(200000): sys.stdout.write(f'line {i}\\n')\nprint('LAST')"
    result = await bwrap.run(tree, script(code), limits=SandboxLimits(output_bytes=10_000))
    assert result.status == "passed" and result.cut_bytes > 1_000_000
    assert result.output.startswith("[output cut: the first ")
    assert result.output.rstrip().endswith("LAST") and len(result.output) < 10_200


async def test_without_bwrap_the_fallback_scrubs_kills_warns_and_says_process(
    tree: Path,
    parent_secret: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(sandbox_module.shutil, "which", lambda name: None)
    sandbox_module._working_bwrap.cache_clear()
    sandbox_module._unshare_net.cache_clear()
    monkeypatch.setattr(sandbox_module, "_WARNED", [])
    try:
        with caplog.at_level(logging.WARNING):
            fallback = default_sandbox()
        assert isinstance(fallback, PlainProcess) and fallback.kind == "process"
        assert "SANDBOX NOT ISOLATED" in caplog.text and "apt-get install bubblewrap" in caplog.text
        result = await fallback.run(tree, script("import os; print(sorted(os.environ))"))
        assert result.sandbox == "process" and parent_secret not in result.output
        assert "ANTHROPIC_API_KEY" not in result.output and "GITHUB_TOKEN" not in result.output
        await _forks_and_sleeps(fallback.run, tree)
        time.sleep(0.5)
        assert _sleepers_alive() == []
    finally:
        sandbox_module._working_bwrap.cache_clear()
        sandbox_module._unshare_net.cache_clear()


@needs_bwrap
async def test_an_interpreter_in_a_virtualenv_under_tmp_runs_in_the_sandbox(
    bwrap: Bubblewrap, tree: Path, tmp_path: Path
) -> None:
    """A new user's venv in /tmp was hidden by the sandbox's private /tmp: no check could run."""
    venv = tmp_path / "venv"  # tmp_path is under /tmp
    subprocess.run([PY, "-m", "venv", "--without-pip", str(venv)], check=True)
    sandbox = Bubblewrap(bwrap.executable, read_only=(*bwrap.read_only, str(venv)))
    result = await sandbox.run(
        tree, [str(venv / "bin" / "python"), "-c", "import sys; print(sys.prefix)"]
    )
    assert result.status == "passed", result.output
    assert result.stdout.strip() == str(venv)


@needs_bwrap
async def test_a_command_bwrap_cannot_start_is_an_error_not_a_failure(
    bwrap: Bubblewrap, tree: Path
) -> None:
    """No fix agent can repair a command that never ran: the verdict says so instead."""
    result = await bwrap.run(tree, ["/nonexistent/python", "-V"])
    assert result.status == "error" and result.exit_code == 1
    assert result.output.startswith("the sandbox could not start the command: bwrap: execvp")
