"""The one place agent-written code runs: a throwaway copy, no secrets, no network, bounded.

Build verification, the agents' `run` tool and the issue pipeline's review
all run commands here, on a copy of a tree materialised from git objects and
change sets (`tasks.common.trees`): never the workdir, a worktree or `.git`.

- `Bubblewrap` (Debian's `bubblewrap`), when `bwrap` is on the machine: its
  own network namespace (only a loopback of its own: no route to any host,
  the host's loopback services included), its own PID, IPC and UTS
  namespaces, no capabilities, the system and the Python environment bound
  read-only, only the copy writable, a private /tmp and a HOME inside the
  copy, an environment built from an allowlist, `--die-with-parent` and a
  new session. bwrap itself starts with a scrubbed environment: with its own
  PID namespace it is PID 1 there, and its /proc/1/environ would otherwise
  show the caller's (measured, see shared/PREFECT_NOTES.md).
- `PlainProcess`, where bwrap is missing: the same scrubbed environment, a
  new session, the whole process tree killed at the timeout, `unshare -n`
  for the network where that works, and one loud warning that the checks are
  not isolated.

Both apply rlimits (CPU seconds, address space, processes, file size), a
wall-clock timeout that kills every process the command started, and an
output cap with a note when output was cut. `Sandbox` is the seam for a
container backend (a fleet would run the same commands in a pod per check).
"""

from __future__ import annotations

import functools
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Protocol

from tasks.common.logs import run_logger
from tasks.common.processes import run_process

SandboxKind = Literal["bwrap", "process"]
CheckStatus = Literal["passed", "failed", "timeout", "error"]

# The only variables a sandboxed command sees (plus HOME, TMPDIR and what a
# caller names explicitly); nothing of the parent's environment passes.
ALLOWED_ENV = ("LANG", "LC_ALL", "TZ")
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
# System directories bound read-only; /etc only file by file, so host secrets
# under /etc (ssh keys, shadow) are not there at all.
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/opt")
_ETC_FILES = (
    "/etc/passwd",
    "/etc/group",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/alternatives",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/mime.types",
)
INSIDE = "/sandbox"  # where the copy is mounted under bwrap


@dataclass(frozen=True)
class SandboxLimits:
    """What one command may use. Defaults fit a project's lint and test run."""

    timeout_s: float = 300.0
    cpu_s: int = 600
    memory_bytes: int = 4 * 1024**3
    processes: int = 256  # beyond the ones the user already runs
    file_bytes: int = 512 * 1024**2
    output_bytes: int = 256 * 1024


@dataclass
class SandboxResult:
    """How a command ended in the sandbox; `output` is the tail of stdout and stderr."""

    command: list[str]
    status: CheckStatus
    exit_code: int | None
    output: str
    duration_s: float
    sandbox: SandboxKind
    cut_bytes: int = 0
    stdout: str = ""  # each stream on its own too, for tools that answer in JSON
    stderr: str = ""


class Sandbox(Protocol):
    """Runs one command on a materialised tree; a container backend would implement this."""

    kind: SandboxKind

    async def run(
        self,
        tree: Path,
        command: Sequence[str],
        *,
        limits: SandboxLimits = ...,
        network: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> SandboxResult: ...


def _environment(home: str, tmp: str, env: Mapping[str, str] | None) -> dict[str, str]:
    base = {k: os.environ[k] for k in ALLOWED_ENV if k in os.environ}
    python_bin = str(Path(sys.executable).parent)
    base.update(
        {
            "PATH": f"{python_bin}:{SYSTEM_PATH}",
            "HOME": home,
            "TMPDIR": tmp,
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            "NO_COLOR": "1",
            "CI": "1",
        }
    )
    base.update(env or {})
    return base


def _rlimits(limits: SandboxLimits) -> Callable[[], None]:
    """Set in the child between fork and exec, so the command and all it starts inherit them."""
    # RLIMIT_NPROC counts the user's processes machine-wide: allow the ones
    # already running plus the command's own.
    running = _processes_of(os.getuid())

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s))
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
        nproc = running + limits.processes
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))

    return apply


_COUNTED: dict[int, tuple[float, int]] = {}


def _processes_of(uid: int) -> int:
    """How many processes `uid` runs, counted at most every 5 s (a scan of /proc is ~10 ms)."""
    now = time.monotonic()
    counted = _COUNTED.get(uid)
    if counted and now - counted[0] < 5.0:
        return counted[1]
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    count += 1
            except OSError:
                continue
    _COUNTED[uid] = (now, count)
    return count


async def _execute(
    argv: list[str],
    *,
    command: list[str],
    cwd: Path,
    env: dict[str, str],
    limits: SandboxLimits,
    kind: SandboxKind,
) -> SandboxResult:
    done = await run_process(
        argv,
        cwd=cwd,
        env=env,
        timeout_s=limits.timeout_s,
        max_output_bytes=limits.output_bytes,
        preexec_fn=_rlimits(limits),
    )
    output = done.stdout + (("\n" + done.stderr) if done.stderr.strip() else "")
    cut = done.dropped_bytes
    if len(output) > limits.output_bytes:
        cut += len(output) - limits.output_bytes
        output = output[-limits.output_bytes :]
    if cut:
        output = f"[output cut: the first {cut} bytes are not shown]\n" + output
    if done.timed_out:
        status: CheckStatus = "timeout"
        output += f"\n[killed: no end within {limits.timeout_s:g}s]"
    else:
        status = "passed" if done.exit_code == 0 else "failed"
    return SandboxResult(
        command=command,
        status=status,
        exit_code=done.exit_code,
        output=output,
        duration_s=round(done.duration_s, 3),
        sandbox=kind,
        cut_bytes=cut,
        stdout=done.stdout,
        stderr=done.stderr,
    )


@functools.cache
def python_roots() -> tuple[str, ...]:
    """The interpreter's installation and environment, bound read-only into the sandbox."""
    roots = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    roots.add(os.path.realpath(Path(sys.executable).parent.parent))
    system = tuple(p for p in _SYSTEM_DIRS if os.path.isdir(p))
    kept = sorted(r for r in roots if not any(r == s or r.startswith(s + "/") for s in system))
    # nested roots are covered by their parent's bind
    return tuple(r for r in kept if not any(r != o and r.startswith(o + "/") for o in kept))


@dataclass
class Bubblewrap:
    """bwrap: namespaces, read-only system, the copy the only writable place."""

    executable: str
    kind: SandboxKind = "bwrap"
    # Bound read-only at their own paths: the interpreter and its environment
    # (a virtualenv may live anywhere, /tmp included).
    read_only: tuple[str, ...] = field(default_factory=python_roots)

    async def run(
        self,
        tree: Path,
        command: Sequence[str],
        *,
        limits: SandboxLimits = SandboxLimits(),
        network: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> SandboxResult:
        home, tmp = f"{INSIDE}/.home", "/tmp"  # noqa: S108 - a private tmpfs, inside
        (tree / ".home").mkdir(exist_ok=True)
        inner_env = _environment(home, tmp, env)
        argv = [self.executable, *self.mounts(tree), *_namespaces(network)]
        argv += ["--chdir", INSIDE, "--clearenv"]
        for key, value in inner_env.items():
            argv += ["--setenv", key, value]
        argv += ["--", *command]
        # bwrap itself gets nothing of ours: it is PID 1 in the sandbox.
        result = await _execute(
            argv,
            command=list(command),
            cwd=tree,
            env={"PATH": SYSTEM_PATH},
            limits=limits,
            kind=self.kind,
        )
        if result.exit_code == 1 and result.stderr.startswith("bwrap: "):
            # bwrap's own failure (exit 1, "bwrap: ..." on stderr; bwrap(1)): the command
            # never ran, so nothing the project's authors could fix would change it.
            return replace(
                result,
                status="error",
                output=f"the sandbox could not start the command: {result.stderr.strip()}",
            )
        return result

    def mounts(self, tree: Path) -> list[str]:
        args: list[str] = []
        for path in _SYSTEM_DIRS:
            if os.path.islink(path):
                args += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                args += ["--ro-bind", path, path]
        for path in _ETC_FILES:
            args += ["--ro-bind-try", path, path]
        # The private /tmp first: a bind made before it under /tmp (a virtualenv
        # there) would be hidden by it.
        args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]  # noqa: S108
        for path in self.read_only:
            args += ["--ro-bind", path, path]
        args += ["--bind", str(tree), INSIDE]
        # The root bwrap builds (a tmpfs holding the mount points) read-only too.
        return [*args, "--remount-ro", "/"]


def _namespaces(network: bool) -> list[str]:
    args = ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if not network:
        args.append("--unshare-net")  # a loopback of its own, and nothing else
    return [*args, "--die-with-parent", "--new-session", "--cap-drop", "ALL"]


@dataclass
class PlainProcess:
    """The fallback without bwrap: a scrubbed, bounded subprocess; isolated only from the net."""

    kind: SandboxKind = "process"

    async def run(
        self,
        tree: Path,
        command: Sequence[str],
        *,
        limits: SandboxLimits = SandboxLimits(),
        network: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> SandboxResult:
        home, tmp = tree / ".home", tree / ".tmp"
        home.mkdir(exist_ok=True)
        tmp.mkdir(exist_ok=True)
        prefix = [] if network else _unshare_net()
        return await _execute(
            [*prefix, *command],
            command=list(command),
            cwd=tree,
            env=_environment(str(home), str(tmp), env),
            limits=limits,
            kind=self.kind,
        )


@functools.cache
def _unshare_net() -> list[str]:
    """`unshare -n` (or `-rn` for an ordinary user) if it works here, else nothing."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return []
    for flags in (["-n"], ["-rn"]):
        probe = subprocess.run(
            [unshare, *flags, "true"], capture_output=True, env={"PATH": SYSTEM_PATH}, check=False
        )
        if probe.returncode == 0:
            return [unshare, *flags]
    return []


_WARNED: list[bool] = []


@functools.cache
def _working_bwrap() -> str | None:
    """The bwrap executable, if it is installed and can create its namespaces here."""
    executable = shutil.which("bwrap")
    if executable is None:
        return None
    probe = subprocess.run(
        [executable, "--ro-bind", "/", "/", "--unshare-net", "--unshare-pid", "--", "true"],
        capture_output=True,
        env={"PATH": SYSTEM_PATH},
        check=False,
    )
    return executable if probe.returncode == 0 else None


def default_sandbox(choice: str | None = None) -> Sandbox:
    """bwrap where it works, else the plain fallback with one loud warning.

    `choice` (or AGENTMILL_SANDBOX) may say "bwrap" or "process" instead of
    "auto"; asking for bwrap where it cannot run is an error that says how to
    install it.
    """
    choice = (choice or os.environ.get("AGENTMILL_SANDBOX") or "auto").lower()
    executable = None if choice == "process" else _working_bwrap()
    if executable is not None:
        return Bubblewrap(executable)
    if choice == "bwrap":
        from tasks.common.errors import AgentmillError

        raise AgentmillError(
            "AGENTMILL_SANDBOX=bwrap, but bubblewrap cannot run here: install it "
            "(apt-get install bubblewrap) or set AGENTMILL_SANDBOX=auto"
        )
    if choice == "auto" and not _WARNED:
        _WARNED.append(True)
        run_logger("agentmill.sandbox").warning(
            "SANDBOX NOT ISOLATED: bubblewrap (bwrap) is not available, so agent-written code "
            "runs as a plain subprocess (scrubbed environment, %s, limits, killed at the "
            "timeout) that can read this machine's files. Install bubblewrap "
            "(apt-get install bubblewrap) to isolate it.",
            "no network" if _unshare_net() else "WITH network",
        )
    return PlainProcess()


_TIMING = re.compile(r"\bin \d+(?:\.\d+)?s\b")


def stable_output(text: str) -> str:
    """Output without the run's own timings, so two identical runs read the same.

    Check output becomes part of downstream agents' inputs (and so of their
    cache keys); "5 passed in 0.12s" would otherwise differ on every run.
    """
    return _TIMING.sub("in _s", text)
