"""The working tree: which paths an agent may write, writes that follow no link, and the run lock.

Agents never touch the disk; the flow applies their change sets here at a
phase boundary, after every path of the phase has passed `check_path` and
`resolve_inside`, so a single bad path leaves the tree as it was. The writes
themselves (`write_under`) walk the tree one directory descriptor at a time
with `O_NOFOLLOW`: a symbolic link anywhere on the way is refused, not
followed, so a link in the user's tree cannot carry an agent's bytes into
`.git` or out of the workdir, whatever changed since the check.

A name is compared as a case-insensitive, normalising file system sees it
(macOS and Windows by default): `.Git`, `.GIT`, `.gi<zero-width>t`, `.git.`
and `git~1` are all `.git` there, at any depth.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import posixpath
import secrets
import socket
import stat
import tempfile
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path, PurePosixPath

from tasks.common.errors import AgentmillError
from tasks.common.logs import run_logger

STORE_DIR = ".tasks"
LOCK_NAME = "lock"
# Bytes per name and per path. Linux and macOS allow 255 per name; the margin
# leaves room for the suffixes editors, git and archivers add to a name, and
# a whole path stays far below PATH_MAX on every system a repository is cloned to.
MAX_NAME_BYTES = 200
MAX_PATH_BYTES = 1024

# Unicode's Default_Ignorable_Code_Point ranges that are not already format
# characters (category Cf): HFS+ and APFS drop these from a name when they
# compare it, so ".g\u034fit" is ".git" there. Git ignores the Cf subset of
# them for the same reason (is_hfs_dotgit, git/git utf8.c).
_IGNORABLE_RANGES = (
    (0x034F, 0x034F),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0xE0000, 0xE0FFF),
)
# NTFS's 8.3 short name of ".git" (is_ntfs_dotgit, git/git path.c).
_GIT_ALIASES = (".git", "git~1")


class PathRejected(AgentmillError, ValueError):
    """An agent asked to write where it must not."""


class WorkspaceBusy(AgentmillError, RuntimeError):
    """Another live run holds the workdir's lock."""


class WorkdirError(AgentmillError, ValueError):
    """The workdir cannot be used as it is; the message says what to change."""


def prepare_workdir(workdir: Path) -> Path:
    """Create the workdir if need be and prove it is a writable directory outside any .git."""
    resolved = workdir.expanduser().resolve()
    if any(fold_name(part) in _GIT_ALIASES for part in resolved.parts):
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


# --- names -------------------------------------------------------------------


def _ignorable(char: str) -> bool:
    if unicodedata.category(char) == "Cf":
        return True
    code = ord(char)
    return any(low <= code <= high for low, high in _IGNORABLE_RANGES)


def fold_name(name: str) -> str:
    """`name` as a case-insensitive, normalising file system compares it.

    Ignorable characters dropped (HFS+, APFS), NFKC-normalised and case-folded
    (NFKC includes NFC's compositions, and maps the full-width forms too), an
    NTFS stream suffix (`:...`) and trailing dots and spaces cut (Windows
    drops them). Two names with the same fold may be one file on a user's disk.
    """
    visible = "".join(char for char in name if not _ignorable(char))
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", visible).casefold())
    return folded.split(":", 1)[0].rstrip(" .")


def fold_path(path: str) -> str:
    return "/".join(fold_name(part) for part in path.split("/"))


def check_names(parts: Iterable[str], shown: str, *, store: bool = False) -> None:
    """Refuse `.git` (in any spelling a file system may take for it) at any depth, `.tasks` on top.

    `store`: the flow's own records under `.tasks/` are allowed (its journal names them).
    """
    for depth, part in enumerate(parts):
        folded = fold_name(part)
        if folded in _GIT_ALIASES:
            spelled = "" if part == ".git" else f" (as {part!r}, which a case-insensitive or "
            spelled += "normalising file system reads as .git)" if spelled else ""
            raise PathRejected(
                f"{shown!r} is inside .git{spelled}; agents may not write git's own files"
            )
        if depth == 0 and folded == STORE_DIR and not (store and part == STORE_DIR):
            raise PathRejected(f"{shown!r} is inside {STORE_DIR}/, which only the flow writes")


def check_path(path: str, *, store: bool = False) -> str:
    """The normalised relative path, or PathRejected saying what is wrong with it.

    `store` lets `.tasks/...` through: the flow's own records, never an agent's path.
    """
    if not path or not path.strip():
        raise PathRejected("the path is empty")
    try:
        encoded = path.encode("utf-8")
    except UnicodeEncodeError:
        raise PathRejected(
            f"{path!r} is not valid Unicode text (a lone surrogate); name files in plain text"
        ) from None
    if "\x00" in path or "\\" in path:
        raise PathRejected(f"{path!r} has a NUL or a backslash; use plain '/'-separated paths")
    if any(unicodedata.category(char) == "Cc" for char in path):
        raise PathRejected(
            f"{path!r} holds a control character (a newline, a tab, ...); name files in "
            "printable text"
        )
    if (
        path.startswith("/")
        or PurePosixPath(path).is_absolute()
        or (len(path) > 1 and path[1] == ":")
    ):
        raise PathRejected(f"{path!r} is absolute; write paths relative to the project root")
    if ".." in PurePosixPath(path).parts:
        raise PathRejected(f"{path!r} climbs out with '..'; stay inside the project")
    normal = posixpath.normpath(path)
    if normal in (".", ""):
        raise PathRejected(f"{path!r} names the project root, not a file")
    if path.endswith("/"):
        raise PathRejected(f"{path!r} ends with '/', which names a directory; name a file")
    parts = normal.split("/")
    long = next((part for part in parts if len(part.encode("utf-8")) > MAX_NAME_BYTES), None)
    if long is not None:
        raise PathRejected(
            f"{path!r} has a name of {len(long.encode('utf-8'))} bytes, over the "
            f"{MAX_NAME_BYTES} a name may have; use a shorter name"
        )
    if len(encoded) > MAX_PATH_BYTES:
        raise PathRejected(
            f"{path!r} is {len(encoded)} bytes long, over {MAX_PATH_BYTES}; use a shorter path"
        )
    check_names(parts, path, store=store)
    return normal


def resolve_inside(workdir: Path, relative: str) -> Path:
    """Where `relative` (checked) lands; refuses links on the way, files as folders, folders.

    Each component is looked at with lstat: a symbolic link anywhere is refused,
    wherever it points, because a write through it lands somewhere the path does
    not say (`git-config -> .git/config`, `gitlink -> .git`). The `.git` rule is
    applied again to the resolved location.
    """
    root = workdir.resolve()
    parts = relative.split("/")
    current = root
    for depth, part in enumerate(parts, start=1):
        current = current / part
        shown = "/".join(parts[:depth])
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            break  # nothing below it exists either
        if stat.S_ISLNK(mode):
            raise PathRejected(
                f"{relative!r} goes through {shown!r}, a symbolic link{_leads(root, current)}; "
                "agents write regular files only, never through a link"
            )
        if depth < len(parts) and not stat.S_ISDIR(mode):
            raise PathRejected(
                f"{relative!r} would put a file under {shown!r}, which is a file; pick another path"
            )
        if depth == len(parts) and stat.S_ISDIR(mode):
            raise PathRejected(f"{relative!r} is a directory in the workdir, not a file")
        if depth == len(parts) and not stat.S_ISREG(mode):
            raise PathRejected(f"{relative!r} is not a regular file in the workdir")
    real = Path(os.path.realpath(root / relative))
    if real != root and root not in real.parents:
        raise PathRejected(f"{relative!r} leads outside the workdir")
    check_names(real.relative_to(root).parts, relative)
    return root / relative


def _leads(root: Path, link: Path) -> str:
    """Where a link points, in words, for the refusal message."""
    target = Path(os.path.realpath(link))
    if target != root and root not in target.parents:
        return " that leads outside the workdir"
    if any(fold_name(part) in _GIT_ALIASES for part in target.relative_to(root).parts):
        return " that leads into .git"
    return ""


# --- writes that follow no link --------------------------------------------------

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_parent(root: Path, relative: str, *, create: bool) -> int:
    """A descriptor of the directory `relative` lives in, reached without following a link.

    With `create`, missing directories are made on the way. FileNotFoundError
    when one is missing and `create` is false; PathRejected for a link or a file
    on the way.
    """
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in relative.split("/")[:-1]:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o777, dir_fd=fd)
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise PathRejected(
                        f"{relative!r} goes through {part!r}, which is a link or a file; "
                        "nothing is written through it"
                    ) from None
                raise
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _lstat_at(fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _read_at(fd: int, name: str) -> bytes:
    handle = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
    with os.fdopen(handle, "rb") as file:
        return file.read()


@contextlib.contextmanager
def _regular_file(root: Path, relative: str) -> Iterator[tuple[int, str] | None]:
    """(directory descriptor, name) of a regular file at `relative` reached through no link."""
    try:
        fd = _open_parent(root, relative, create=False)
    except (FileNotFoundError, PathRejected):
        yield None
        return
    try:
        name = relative.rsplit("/", 1)[-1]
        found = _lstat_at(fd, name)
        yield (fd, name) if found is not None and stat.S_ISREG(found.st_mode) else None
    finally:
        os.close(fd)


def read_under(root: Path, relative: str) -> bytes | None:
    """The bytes of a regular file at `relative`, or None when there is none (or a link)."""
    with _regular_file(root, relative) as found:
        return None if found is None else _read_at(*found)


def write_under(root: Path, relative: str, data: bytes) -> bool:
    """Write `root/relative` atomically, following no link; False when it held `data` already.

    A temp file in the same directory, fsynced, then renamed over the target:
    a crash leaves the old file or the new one. The temp name is short and
    fixed in form, so a long target name cannot push it past the system's limit.
    An existing file keeps its permission bits (an executable script stays one).
    A rerun restores the same files into the same workdir: comparing first costs
    a read, writing costs a temp file, an fsync and a rename per file.
    """
    name = relative.rsplit("/", 1)[-1]
    fd = _open_parent(root, relative, create=True)
    try:
        existing = _lstat_at(fd, name)
        if existing is not None:
            if not stat.S_ISREG(existing.st_mode):
                kind = "a symbolic link" if stat.S_ISLNK(existing.st_mode) else "not a file"
                raise PathRejected(f"{relative!r} is {kind} in the workdir; nothing is written")
            if existing.st_size == len(data) and _read_at(fd, name) == data:
                return False
        temp = f".agentmill-{secrets.token_hex(8)}.tmp"
        out = os.open(
            temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666,
            dir_fd=fd,
        )  # fmt: skip
        try:
            with os.fdopen(out, "wb") as handle:
                if existing is not None:
                    os.fchmod(handle.fileno(), stat.S_IMODE(existing.st_mode))
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, name, src_dir_fd=fd, dst_dir_fd=fd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp, dir_fd=fd)
            raise
        return True
    finally:
        os.close(fd)


def remove_under(root: Path, relative: str) -> bool:
    """Unlink `root/relative` if it is a regular file reached through no link; True if it did."""
    with _regular_file(root, relative) as found:
        if found is None:
            return False
        os.unlink(found[1], dir_fd=found[0])
        return True


def json_bytes(data: object) -> bytes:
    """How agentmill writes JSON records: sorted keys, indented, a final newline."""
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def atomic_write(path: Path, data: bytes) -> None:
    """Write a file agentmill owns (outside any tree agents write) via a temp file and rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_under(path.parent, path.name, data)


def atomic_write_json(path: Path, data: object) -> None:
    atomic_write(path, json_bytes(data))


# --- a phase's writes ------------------------------------------------------------


Writes = dict[str, str]  # relative path -> content


def plan_writes(workdir: Path, changes: Mapping[str, Mapping[str, str]]) -> Writes:
    """Check every path of a phase ({role: {path: content}}) before anything is written.

    Returns {relative path: content}; the error names the agent and the path.
    """
    writes: Writes = {}
    for role, files in changes.items():
        for path, content in files.items():
            try:
                relative = check_path(path)
                resolve_inside(workdir, relative)
            except PathRejected as exc:
                raise PathRejected(f"agent {role} wrote a rejected path: {exc}") from exc
            writes[relative] = content
    return writes


def write_all(workdir: Path, writes: Writes) -> list[str]:
    """Write each file (following no link); returns the paths whose content changed."""
    root = workdir.resolve()
    return [path for path, content in writes.items() if write_under(root, path, content.encode())]


def apply_files(workdir: Path, changes: Mapping[str, Mapping[str, str]]) -> list[str]:
    """Apply a phase's change sets, all or nothing as far as paths go; returns them sorted."""
    writes = plan_writes(workdir, changes)
    write_all(workdir, writes)
    return sorted(writes)


# --- the run lock ------------------------------------------------------------------


def store_dir(workdir: Path) -> Path:
    """`<workdir>/.tasks`, created if need be; refused when it is a link (it could lead to .git)."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / STORE_DIR
    with contextlib.suppress(FileExistsError):
        os.mkdir(path)
    if not stat.S_ISDIR(os.lstat(path).st_mode):
        raise WorkdirError(
            f"{path} is a symbolic link or a file, not a directory; agentmill keeps its run "
            "state there and never follows a link (it could lead into .git): remove it"
        )
    return path


@contextlib.contextmanager
def workspace_lock(workdir: Path, run_id: str) -> Iterator[None]:
    """One live run per workdir: an exclusive `flock` on `.tasks/lock`, held for the whole run.

    The kernel drops the lock when its process ends, however it ends (SIGKILL
    included), so a dead run's lock needs no clearing, and no run ever deletes a
    lock file: deleting one another run holds is how two runs got in at once.
    The file's text only names the holder, for the error and the log; a run that
    ends cleanly empties it, so a name found there by the next run is a dead one's.
    """
    path = store_dir(workdir) / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            raise WorkspaceBusy(
                f"{workdir} is in use by run {holder.get('run_id', '(starting)')} (pid "
                f"{holder.get('pid', '?')} on {holder.get('host', '?')}); wait for it to "
                "finish, or use another workdir"
            ) from None
        previous = _read_holder(fd)
        if previous.get("run_id") is not None:
            run_logger("agentmill.workspace").warning(
                "clearing a stale lock in %s left by run %s (pid %s on %s is gone: the kernel "
                "released its lock)",
                workdir, previous.get("run_id"), previous.get("pid"), previous.get("host"),
            )  # fmt: skip
        me = {"pid": os.getpid(), "host": socket.gethostname(), "run_id": run_id}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # ended cleanly: nobody to name
    finally:
        os.close(fd)  # releases the lock


def _read_holder(fd: int) -> dict[str, object]:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
