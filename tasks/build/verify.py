"""Verification: which checks a candidate tree has, running them, and what a failure points at.

Checks are detected from the tree (Python: `ruff check` and `pytest`, mypy
where the project configures it; a package.json's test/build/lint scripts
when node and npm are on the machine; a Makefile's `test` target) plus any a
team's roles declare. Each runs in the sandbox as its own Prefect task whose
cache key is the tree's content and the command, so a rerun of a green
build runs no check at all; a timeout or a sandbox error is never cached.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import shutil
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from prefect import task
from prefect.context import TaskRunContext
from prefect.utilities.annotations import quote
from pydantic import BaseModel, Field

from tasks.common.errors import AgentmillError
from tasks.common.sandbox import (
    INSIDE,
    CheckStatus,
    SandboxKind,
    SandboxLimits,
    default_sandbox,
    stable_output,
)
from tasks.common.trees import CandidateTree

# Bump to make every cached check result stale (e.g. after a change in how checks run).
CHECKS_VERSION = "agentmill-checks-v1"
TAIL_CHARS = 4000
CODE_SUFFIXES = {
    ".py", ".pyi", ".js", ".jsx", ".ts", ".tsx", ".mjs", ".cjs", ".go", ".rs", ".java",
    ".rb", ".php", ".c", ".h", ".cc", ".cpp", ".cs", ".swift", ".kt", ".sh",
}  # fmt: skip
CODE_NAMES = {"pyproject.toml", "setup.py", "setup.cfg", "package.json", "Makefile", "tox.ini"}
_MISSING = re.compile(
    r"(?:ModuleNotFoundError: No module named '(?P<py>[\w.]+)'"
    r"|Cannot find module '(?P<js>[^']+)'|command not found: (?P<cmd>\S+))"
)
DEPS_DIR = ".deps"
VerdictStatus = Literal["passed", "failed", "skipped"]


class CheckSpec(BaseModel):
    """One check: a name for people, the command (an argument list), its time limit."""

    name: str
    command: list[str]
    timeout_s: float = 300.0


class CheckRun(BaseModel):
    """How one check went; the report contract's check entry."""

    name: str
    command: str
    status: CheckStatus
    exit_code: int | None
    duration_s: float
    sandbox: SandboxKind
    output_tail: str
    missing_dependency: str | None = None
    cached: bool = Field(default=False, description="Its result came from Prefect's cache.")


class VerificationRound(BaseModel):
    round: int
    phase: str
    checks: list[CheckRun]
    fixed_by: list[str] = Field(default_factory=list, description="Roles that fixed after it.")
    started_s: float = Field(default=0.0, description="Seconds from the build's start.")
    finished_s: float = Field(default=0.0, description="When its checks had all ended.")


class Verification(BaseModel):
    """The build's verdict: "passed" if every verified phase ended green, "skipped" if none ran."""

    status: VerdictStatus = "skipped"
    rounds: list[VerificationRound] = Field(default_factory=list)

    @classmethod
    def of(cls, rounds: list[VerificationRound]) -> Verification:
        """The verdict of these rounds: every phase's last round green, or not."""
        last = {r.phase: r for r in rounds}
        status: VerdictStatus = "skipped"
        if last:
            green = all(c.status == "passed" for r in last.values() for c in r.checks)
            status = "passed" if green else "failed"
        return cls(status=status, rounds=rounds)

    def line(self) -> str:
        """One line for the terminal and the commit: the verdict and how it got there."""
        if self.status == "skipped":
            return "checks skipped (no code to check)"
        last = {r.phase: r for r in self.rounds}
        failing = [c.name for r in last.values() for c in r.checks if c.status != "passed"]
        fixes = sum(len(r.fixed_by) for r in self.rounds)
        what = f"{len(self.rounds)} round(s), {fixes} fix(es)"
        if self.status == "passed":
            return f"checks passed ({what})"
        return f"checks FAILED: {', '.join(failing)} ({what})"


def is_code(path: str) -> bool:
    p = PurePosixPath(path)
    return p.suffix in CODE_SUFFIXES or p.name in CODE_NAMES


def detect_checks(
    tree: CandidateTree,
    read: dict[str, str],
    declared: Iterable[str] = (),
    timeout_s: float = 300.0,
) -> list[CheckSpec]:
    """The checks the tree calls for, with `read` holding the text of its config files."""
    paths = tree.paths()
    python = [sys.executable, "-m"]
    found: list[tuple[str, list[str]]] = []
    if any(p.endswith(".py") for p in paths):
        ruff = ["ruff", "check", "--no-cache", "--output-format", "concise", "."]
        found.append(("ruff", [*python, *ruff]))
        if any(_is_test_file(p) for p in paths):
            pytest = ["pytest", "-q", "-p", "no:cacheprovider", "--tb=short", "--color=no"]
            found.append(("pytest", [*python, *pytest]))
        if _mypy_configured(read):
            found.append(("mypy", [*python, "mypy", "."]))
    if "package.json" in paths and shutil.which("node") and shutil.which("npm"):
        scripts = _npm_scripts(read.get("package.json", ""))
        found += [
            (f"npm {s}", ["npm", "run", s]) for s in ("lint", "build", "test") if s in scripts
        ]
    makefile = read.get("Makefile", "")
    if re.search(r"^test\s*:", makefile, re.M) and shutil.which("make"):
        found.append(("make test", ["make", "test"]))
    found += [(command, shlex.split(command)) for command in declared]
    return [CheckSpec(name=n, command=c, timeout_s=timeout_s) for n, c in found]


CONFIG_FILES = ("pyproject.toml", "setup.cfg", "mypy.ini", ".mypy.ini", "package.json", "Makefile")


def _is_test_file(path: str) -> bool:
    name = PurePosixPath(path).name
    return name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))


def _mypy_configured(read: dict[str, str]) -> bool:
    return (
        "mypy.ini" in read
        or ".mypy.ini" in read
        or "[tool.mypy]" in read.get("pyproject.toml", "")
        or "[mypy]" in read.get("setup.cfg", "")
    )


def _npm_scripts(package_json: str) -> set[str]:
    import json

    try:
        data = json.loads(package_json)
    except ValueError:
        return set()
    scripts = data.get("scripts") if isinstance(data, dict) else None
    return set(scripts) if isinstance(scripts, dict) else set()


def _check_key(_: TaskRunContext, parameters: dict[str, Any]) -> str:
    tree = parameters["tree"]
    if isinstance(tree, quote):
        tree = tree.unquote()
    spec: CheckSpec = parameters["spec"]
    payload = "\0".join(
        [CHECKS_VERSION, tree.digest(), *spec.command, str(spec.timeout_s),
         str(parameters.get("install_deps", False)), parameters.get("sandbox_kind", "")]
    )  # fmt: skip
    return "check-" + hashlib.sha256(payload.encode()).hexdigest()[:40]


class NotCached(AgentmillError):
    """A check that timed out or could not run: reported, but never kept in the cache."""

    def __init__(self, run: CheckRun) -> None:
        what = "timed out" if run.status == "timeout" else "could not run"
        super().__init__(f"check {run.name} {what}: not cached, it runs again next time")
        self.run = run


@task(
    name="check",
    task_run_name="check {spec.name}",
    cache_key_fn=_check_key,
    persist_result=True,
    retries=0,
)
async def run_check(
    tree: CandidateTree, spec: CheckSpec, install_deps: bool = False, sandbox_kind: str = ""
) -> CheckRun:
    """Materialise the tree, run one check in the sandbox, and say how it went."""
    sandbox = default_sandbox(sandbox_kind or None)
    with tempfile.TemporaryDirectory(prefix="agentmill-check-") as scratch:
        copy = tree.materialise(Path(scratch) / "tree")
        env: dict[str, str] = {}
        if install_deps:
            installed = await install_dependencies(copy, sandbox)
            if installed is not None:
                return installed.model_copy(update={"name": spec.name})
            env["PYTHONPATH"] = str(_inside(sandbox.kind, copy) / DEPS_DIR)
        result = await sandbox.run(
            copy, spec.command, limits=SandboxLimits(timeout_s=spec.timeout_s), env=env
        )
    output = stable_output(result.output)
    tail = output[-TAIL_CHARS:]
    if len(output) > TAIL_CHARS:  # say so: the sandbox's own note was at the front
        hidden = result.cut_bytes + len(output) - TAIL_CHARS
        tail = f"[output cut: the first {hidden} bytes are not shown]\n" + tail
    missing = _MISSING.search(result.output) if result.status == "failed" else None
    run = CheckRun(
        name=spec.name,
        command=shlex.join(spec.command).replace(sys.executable, "python"),
        status=result.status,
        exit_code=result.exit_code,
        duration_s=result.duration_s,
        sandbox=result.sandbox,
        output_tail=tail,
        missing_dependency=next((g for g in missing.groups() if g), None) if missing else None,
    )
    if run.missing_dependency and not install_deps:
        run.output_tail += (
            f"\n[agentmill: {run.missing_dependency!r} is not installed in the sandbox; the "
            "project's own dependencies are installed only with install_deps "
            "(--install-deps), which needs the network]"
        )
    if run.status in ("timeout", "error"):
        raise NotCached(run)
    return run


def _inside(kind: str, copy: Path) -> Path:
    return Path(INSIDE) if kind == "bwrap" else copy


async def install_dependencies(copy: Path, sandbox: Any) -> CheckRun | None:
    """Install the project's own dependencies into the copy (network on); None if it worked.

    Opt-in (install_deps): it is the one sandboxed step allowed the network,
    and it writes only into the copy's DEPS_DIR.
    """
    steps: list[list[str]] = []
    target = str(_inside(sandbox.kind, copy) / DEPS_DIR)
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    if (copy / "requirements.txt").is_file():
        steps.append([*pip, "--target", target, "-r", "requirements.txt"])
    elif (copy / "pyproject.toml").is_file() and "dependencies" in (
        copy / "pyproject.toml"
    ).read_text(errors="replace"):
        steps.append([*pip, "--target", target, "--no-build-isolation", "."])
    if (copy / "package.json").is_file() and shutil.which("npm"):
        steps.append(["npm", "install", "--no-audit", "--no-fund"])
    for command in steps:
        result = await sandbox.run(copy, command, limits=SandboxLimits(timeout_s=900), network=True)
        if result.status != "passed":
            return CheckRun(
                name="install dependencies",
                command=shlex.join(command).replace(sys.executable, "python"),
                status="error",
                exit_code=result.exit_code,
                duration_s=result.duration_s,
                sandbox=result.sandbox,
                output_tail=stable_output(result.output)[-TAIL_CHARS:],
            )
    return None


def pointed_at(runs: Iterable[CheckRun], paths: Iterable[str]) -> list[str]:
    """The tree's files that the failing checks' output names (tracebacks, lint lines)."""
    text = "\n".join(r.output_tail for r in runs if r.status != "passed")
    return sorted(p for p in paths if re.search(rf"(?<![\w/.]){re.escape(p)}(?![\w/])", text))


def failure_report(runs: Iterable[CheckRun], files: list[str]) -> str:
    """What a fix agent is told: each failing command, its exit code, the tail of its output."""
    parts = []
    for run in runs:
        if run.status == "passed":
            continue
        code = "timed out" if run.exit_code is None else f"exit code {run.exit_code}"
        parts.append(f"$ {run.command}  ({run.status}, {code})\n{run.output_tail[-2500:]}")
    if files:
        parts.append("Files the failures point at: " + ", ".join(files))
    return "\n\n".join(parts)
