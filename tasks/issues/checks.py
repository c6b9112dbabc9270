"""The review step's checks: ruff, bandit, a secret scan and the repository's own tests.

They run at the same time on a throwaway copy of the changed tree
(`tasks.common.trees`), in the sandbox (`tasks.common.sandbox`): bubblewrap
where it is installed, with no network, no secrets and no view of the clone
or its worktrees. Ruff, bandit and the secret scan look at the changed files
only, so findings are about this change, not about the repository's past;
the tests run whole, because a change can break any of them. The tests are
code we did not write: they must not see the GitHub token, a model key or
the Prefect API, nor leave anything behind.

The findings reach the reviewer agent as the output of a pseudo-agent
(`ISSUE_CHECKS`) it depends on, so they are part of its cache key like any
upstream output; the reviewer's score and the findings go into the PR body.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from tasks.agents.output import AgentOutput
from tasks.common.sandbox import INSIDE, SandboxLimits, default_sandbox
from tasks.common.secrets import redact, scan_text
from tasks.common.trees import CandidateTree
from tasks.model.endpoint import Provider

Severity = Literal["error", "warning", "info"]
ToolStatus = Literal["passed", "findings", "failed", "skipped", "error"]

CHECK_TIMEOUT_S = 300.0
TEST_TIMEOUT_S = 900.0
MAX_SCAN_BYTES = 1_000_000
MAX_TOOL_OUTPUT = 4 * 1024 * 1024  # ruff and bandit answer in JSON: keep all of it
_SKIP_DIRS = {".git", ".tasks", "node_modules", ".venv", "venv", "__pycache__", ".tox", "build"}


class CheckFinding(BaseModel):
    tool: str
    severity: Severity
    path: str = ""
    line: int = 0
    code: str = ""
    message: str


class ToolRun(BaseModel):
    tool: str
    status: ToolStatus
    summary: str
    duration_s: float = 0.0
    findings: list[CheckFinding] = Field(default_factory=list)


class ChecksReport(BaseModel):
    tools: list[ToolRun]

    @property
    def findings(self) -> list[CheckFinding]:
        return [f for t in self.tools for f in t.findings]

    def summary(self) -> str:
        return "; ".join(f"{t.tool}: {t.summary}" for t in self.tools)

    def as_output(self, role: str, provider: Provider) -> AgentOutput:
        """The findings as an upstream output the reviewer reads with read_output(role)."""
        return AgentOutput(
            role=role,
            summary=self.summary(),
            decisions=[f"{t.tool}: {t.status}" for t in self.tools],
            result={
                "tools": [t.model_dump(exclude={"findings", "duration_s"}) for t in self.tools],
                "findings": [f.model_dump() for f in self.findings],
            },
            model="checks",
            provider=provider,
        )


@task(name="review-checks", cache_policy=NO_CACHE, persist_result=False)
async def run_checks(tree: CandidateTree, changed: list[str]) -> ChecksReport:
    """Run every check on a throwaway copy of the changed tree, in the sandbox; none raises.

    The copy is materialised from git objects and the agents' outputs, never
    the worktree: a test the code agent wrote can touch neither the clone nor
    the branch that is pushed, and sees none of this run's secrets.
    """
    with tempfile.TemporaryDirectory(prefix="agentmill-review-") as scratch:
        copy = await asyncio.to_thread(tree.materialise, Path(scratch) / "tree")
        return await check_tree(copy, changed)


async def check_tree(tree: Path, changed: list[str]) -> ChecksReport:
    """All checks at once; every message is redacted, as findings end up in a public PR.

    The run's own secrets (`scanning_for`) are looked for and masked too.
    """
    present = [p for p in changed if (tree / p).is_file()]
    python = [p for p in present if p.endswith(".py")]
    runs = await asyncio.gather(
        _ruff(tree, python),
        _bandit(tree, python),
        _secret_scan(tree, present),
        _pytest(tree),
    )
    for run in runs:
        run.summary = redact(run.summary)
        for finding in run.findings:
            finding.message = redact(finding.message)
    return ChecksReport(tools=list(runs))


# --- running tools -----------------------------------------------------------


async def _run(args: list[str], cwd: Path, timeout_s: float) -> tuple[int | None, str, str]:
    """(exit code or None on timeout, stdout, stderr) of one tool run, in the sandbox."""
    limits = SandboxLimits(timeout_s=timeout_s, output_bytes=MAX_TOOL_OUTPUT)
    result = await default_sandbox().run(cwd, args, limits=limits)
    return result.exit_code, result.stdout, result.stderr


def _relative(tree: Path, filename: str) -> str:
    """A tool's file name relative to the tree (outside bwrap, or at its mount point inside)."""
    path = Path(filename)
    if not path.is_absolute():
        return os.path.normpath(filename)
    for root in (tree.resolve(), Path(INSIDE)):
        try:
            return str(path.relative_to(root))
        except ValueError:
            continue
    return filename


async def _ruff(tree: Path, files: list[str]) -> ToolRun:
    started = time.perf_counter()
    if not files:
        return ToolRun(tool="ruff", status="skipped", summary="no Python file changed")
    args = [sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "json"]
    code, out, err = await _run([*args, "--exit-zero", "--", *files], tree, CHECK_TIMEOUT_S)
    took = round(time.perf_counter() - started, 3)
    if code is None:
        return ToolRun(tool="ruff", status="error", summary="timed out", duration_s=took)
    try:
        items = json.loads(out or "[]")
    except ValueError:
        return ToolRun(tool="ruff", status="error", summary=_tail(err or out), duration_s=took)
    findings = [
        CheckFinding(
            tool="ruff",
            severity=_ruff_severity(item.get("code")),
            path=_relative(tree, item.get("filename", "")),
            line=int((item.get("location") or {}).get("row") or 0),
            code=item.get("code") or "syntax",
            message=item.get("message", ""),
        )
        for item in items
    ]
    return _finish("ruff", findings, f"{len(files)} file(s)", took)


def _ruff_severity(code: str | None) -> Severity:
    if not code or code.startswith(("E9", "F63", "F7", "F82")):
        return "error"  # syntax errors and undefined names: the code cannot run
    return "warning"


async def _bandit(tree: Path, files: list[str]) -> ToolRun:
    started = time.perf_counter()
    if not files:
        return ToolRun(tool="bandit", status="skipped", summary="no Python file changed")
    code, out, err = await _run(
        [sys.executable, "-m", "bandit", "-f", "json", "-q", "--", *files], tree, CHECK_TIMEOUT_S
    )
    took = round(time.perf_counter() - started, 3)
    if code is None:
        return ToolRun(tool="bandit", status="error", summary="timed out", duration_s=took)
    try:
        data = json.loads(out)
    except ValueError:
        return ToolRun(tool="bandit", status="error", summary=_tail(err or out), duration_s=took)
    findings = []
    for item in data.get("results", []):
        path = _relative(tree, item.get("filename", ""))
        if item.get("test_id") == "B101" and _is_test_file(path):
            continue  # assert is how tests check things
        findings.append(
            CheckFinding(
                tool="bandit",
                severity={"HIGH": "error", "MEDIUM": "warning"}.get(
                    item.get("issue_severity", ""), "info"
                ),
                path=path,
                line=int(item.get("line_number") or 0),
                code=item.get("test_id", ""),
                message=_bandit_message(item),
            )
        )
    for item in data.get("errors", []):
        findings.append(
            CheckFinding(
                tool="bandit",
                severity="error",
                path=_relative(tree, item.get("filename", "")),
                message=f"could not scan: {item.get('reason', 'unknown reason')}",
            )
        )
    return _finish("bandit", findings, f"{len(files)} file(s)", took)


def _bandit_message(item: dict[str, Any]) -> str:
    text = str(item.get("issue_text", ""))
    if item.get("test_id") in ("B105", "B106", "B107"):
        return text.split(":", 1)[0]  # the rest quotes the suspected password itself
    return text


def _is_test_file(path: str) -> bool:
    name = Path(path).name
    return name.startswith("test_") or name.endswith("_test.py") or "tests" in Path(path).parts


# --- secrets -----------------------------------------------------------------


async def _secret_scan(tree: Path, files: list[str]) -> ToolRun:
    started = time.perf_counter()
    findings = await asyncio.to_thread(scan_secrets, tree, files)
    took = round(time.perf_counter() - started, 3)
    return _finish("secrets", findings, f"{len(files)} file(s)", took)


def scan_secrets(tree: Path, files: list[str]) -> list[CheckFinding]:
    """Secrets in the changed files: key shapes, hard-coded credentials, this run's own."""
    findings = []
    for path in files:
        try:
            data = (tree / path).read_bytes()[:MAX_SCAN_BYTES]
        except OSError:
            continue
        for found in scan_text(path, data.decode(errors="replace"), warnings=True):
            findings.append(
                CheckFinding(
                    tool="secrets",
                    severity=found.severity,
                    path=path,
                    line=found.line,
                    code="secret",
                    message=f"possible {found.kind}; remove it and rotate it if it is real",
                )
            )
    return findings


# --- tests -------------------------------------------------------------------

_FAILED = re.compile(r"^(FAILED|ERROR) (\S+)(?: - (.*))?$", re.M)
_TIMING = re.compile(r" in [\d.]+s\b.*$")
_RESULT = re.compile(r"^=*\s*(\d+ (?:passed|failed|error).*?)\s*=*$", re.M)
_PYTEST_CONFIG = {
    "pytest.ini": "",
    "pyproject.toml": "[tool.pytest",
    "tox.ini": "[pytest]",
    "setup.cfg": "[tool:pytest]",
}


def has_tests(tree: Path) -> bool:
    for _root, dirs, names in os.walk(tree):
        dirs[:] = [d for d in dirs if d not in _SKIP_DIRS and not d.startswith(".")]
        if any(
            n.endswith(".py") and (n.startswith("test_") or n.endswith("_test.py")) for n in names
        ):
            return True
    return False


def _own_pytest_config(tree: Path) -> bool:
    for name, marker in _PYTEST_CONFIG.items():
        path = tree / name
        if path.is_file() and marker in path.read_text(errors="replace"):
            return True
    return False


async def _pytest(tree: Path) -> ToolRun:
    started = time.perf_counter()
    if not await asyncio.to_thread(has_tests, tree):
        return ToolRun(tool="pytest", status="skipped", summary="the repository has no tests")
    args = [sys.executable, "-m", "pytest", "-q", "-rfE", "--color=no", "-p", "no:cacheprovider"]
    if not await asyncio.to_thread(_own_pytest_config, tree):
        # Without its own config, pytest would climb to a parent directory's (ours, if
        # the clone lives inside agentmill's checkout) and run under its options.
        args += ["-c", os.devnull, "--rootdir", "."]
    code, out, err = await _run(args, tree, TEST_TIMEOUT_S)
    took = round(time.perf_counter() - started, 3)
    if code is None:
        finding = CheckFinding(
            tool="pytest",
            severity="error",
            code="timeout",
            message=f"the tests did not finish within {TEST_TIMEOUT_S:g}s",
        )
        return ToolRun(
            tool="pytest", status="failed", summary="timed out", duration_s=took, findings=[finding]
        )
    result = _RESULT.findall(out)
    # Without the time it took: the summary is in the reviewer's cache key.
    summary = _TIMING.sub("", result[-1]) if result else _tail(out or err)
    if code == 0:
        return ToolRun(tool="pytest", status="passed", summary=summary, duration_s=took)
    if code == 5:
        return ToolRun(tool="pytest", status="skipped", summary="no tests collected")
    findings = [
        CheckFinding(
            tool="pytest",
            severity="error",
            path=node.split("::", 1)[0],
            code=kind.lower(),
            message=f"{node}: {reason or kind.lower()}"[:500],
        )
        for kind, node, reason in _FAILED.findall(out)
    ]
    if not findings:
        findings.append(
            CheckFinding(
                tool="pytest", severity="error", code=f"exit-{code}", message=_tail(out + err)
            )
        )
    return ToolRun(
        tool="pytest", status="failed", summary=summary, duration_s=took, findings=findings
    )


def _finish(tool: str, findings: list[CheckFinding], scope: str, took: float) -> ToolRun:
    if not findings:
        return ToolRun(tool=tool, status="passed", summary=f"clean ({scope})", duration_s=took)
    return ToolRun(
        tool=tool,
        status="findings",
        summary=f"{len(findings)} finding(s) in {scope}",
        duration_s=took,
        findings=findings,
    )


def _tail(text: str, limit: int = 400) -> str:
    text = text.strip()
    return text[-limit:] if text else "no output"
