"""The working tree: which paths an agent may write, atomic writes, and the run lock.

Agents never touch the disk; the flow applies their change sets here at a
phase boundary, after every path of the phase has passed `check_path` and
`resolve_inside`, so a single bad path leaves the tree as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from tasks.common.errors import AgentmillError
from tasks.common.logs import run_logger

STORE_DIR = ".tasks"
LOCK_NAME = "lock"


class PathRejected(AgentmillError, ValueError):
    """An agent asked to write where it must not."""


class WorkspaceBusy(AgentmillError, RuntimeError):
    """Another live run holds the workdir's lock."""


class WorkdirError(AgentmillError, ValueError):
    """The workdir cannot be used as it is; the message says what to change."""


def prepare_workdir(workdir: Path) -> Path:
    """Create the workdir if need be and prove it is a writable directory outside any .git."""
    resolved = workdir.expanduser().resolve()
    if ".git" in resolved.parts:
        raise WorkdirError(
            f"{workdir} is inside a .git directory; pass a directory outside git's own data"
        )
    if resolved.exists() and not resolved.is_dir():
        raise WorkdirError(f"{workdir} is a file, not a directory; pass a directory path")
    try:
        resolved.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=resolved):
            pass
    except OSError as exc:
        raise WorkdirError(
            f"cannot write to {workdir} ({exc.strerror or exc}); pass a directory you can write to"
        ) from exc
    return resolved


def check_path(path: str) -> str:
    """The normalised relative path, or PathRejected saying what is wrong with it."""
    if not path or not path.strip():
        raise PathRejected("the path is empty")
    if "\x00" in path or "\\" in path:
        raise PathRejected(f"{path!r} has a NUL or a backslash; use plain '/'-separated paths")
    if (
        path.startswith("/")
        or PurePosixPath(path).is_absolute()
        or (len(path) > 1 and path[1] == ":")
    ):
        raise PathRejected(f"{path!r} is absolute; write paths relative to the project root")
    parts = PurePosixPath(path).parts
    if ".." in parts:
        raise PathRejected(f"{path!r} climbs out with '..'; stay inside the project")
    normal = posixpath.normpath(path)
    top = PurePosixPath(normal).parts[0]
    if top == ".git":
        raise PathRejected(f"{path!r} is inside .git; agents may not write git's own files")
    if top == STORE_DIR:
        raise PathRejected(f"{path!r} is inside {STORE_DIR}/, which only the flow writes")
    if normal in (".", ""):
        raise PathRejected(f"{path!r} names the project root, not a file")
    return normal


def resolve_inside(workdir: Path, relative: str) -> Path:
    """The file's real location; refuses symlinks that lead out and existing directories."""
    root = workdir.resolve()
    target = (root / relative).resolve()
    if target != root and root not in target.parents:
        raise PathRejected(f"{relative!r} leads outside the workdir through a symlink")
    if target.is_dir():
        raise PathRejected(f"{relative!r} is a directory in the workdir, not a file")
    return target


def atomic_write(path: Path, data: bytes) -> None:
    """Write via a temp file and rename, so a crash leaves the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_if_changed(path: Path, data: bytes) -> bool:
    """`atomic_write` unless the file already holds exactly `data`; True if it wrote.

    A rerun restores the same files into the same workdir: comparing costs a
    read, writing costs a temp file, an fsync and a rename per file, on the
    path from one phase's commit to the next.
    """
    try:
        if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
    except OSError:
        pass  # unreadable: write it
    atomic_write(path, data)
    return True


def atomic_write_json(path: Path, data: object, only_if_changed: bool = False) -> None:
    encoded = (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()
    if only_if_changed:
        write_if_changed(path, encoded)
    else:
        atomic_write(path, encoded)


Writes = dict[str, tuple[Path, str]]


def plan_writes(workdir: Path, changes: dict[str, dict[str, str]]) -> Writes:
    """Check every path of a phase ({role: {path: content}}) before anything is written.

    Returns {relative path: (target, content)}; the error names the agent and the path.
    """
    writes: Writes = {}
    for role, files in changes.items():
        for path, content in files.items():
            try:
                relative = check_path(path)
                target = resolve_inside(workdir, relative)
            except PathRejected as exc:
                raise PathRejected(f"agent {role} wrote a rejected path: {exc}") from exc
            writes[relative] = (target, content)
    return writes


def write_all(writes: Writes) -> None:
    for target, content in writes.values():
        write_if_changed(target, content.encode())


def apply_files(workdir: Path, changes: dict[str, dict[str, str]]) -> list[str]:
    """Apply a phase's change sets, all or nothing as far as paths go; returns them sorted."""
    writes = plan_writes(workdir, changes)
    write_all(writes)
    return sorted(writes)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def workspace_lock(workdir: Path, run_id: str) -> Iterator[None]:
    """One live run per workdir; a lock left by a dead process on this host is cleared."""
    lock = workdir / STORE_DIR / LOCK_NAME
    lock.parent.mkdir(parents=True, exist_ok=True)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "run_id": run_id}
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read_lock(lock)
            same_host = holder.get("host") == me["host"]
            pid = holder.get("pid")
            if same_host and isinstance(pid, int) and not _pid_alive(pid):
                run_logger("agentmill.workspace").warning(
                    "clearing a stale lock in %s left by run %s (pid %s is gone)",
                    workdir, holder.get("run_id"), pid,
                )  # fmt: skip
                lock.unlink(missing_ok=True)
                continue
            raise WorkspaceBusy(
                f"{workdir} is in use by run {holder.get('run_id')} (pid {pid} on "
                f"{holder.get('host')}); wait for it to finish, or remove {lock} if that "
                "run is gone"
            ) from None
        with os.fdopen(fd, "w") as handle:
            json.dump(me, handle)
        break
    else:  # pragma: no cover - another process won the race twice
        raise WorkspaceBusy(f"{workdir} is being locked by another run; try again")
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _read_lock(lock: Path) -> dict[str, object]:
    try:
        data = json.loads(lock.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
