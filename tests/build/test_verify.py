"""Verification: which checks a tree gets, what a failure points at, and checks that misbehave."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import sys
import uuid
import zipfile
from pathlib import Path

import pytest

from blocks.team import AgentTeam, Role
from flows.build_app import CHECKS_FAILED, main
from tasks.build.verify import CheckRun, CheckSpec, detect_checks, pointed_at, run_check
from tasks.common.git import open_repo, tree_of
from tasks.common.trees import CandidateTree
from tasks.testing.repos import git


def test_checks_are_detected_from_the_tree(tmp_path: Path) -> None:
    tree = CandidateTree(str(tmp_path), "4b825dc642cb6eb9a060e54bf8d69288fbee4904")
    assert detect_checks(tree, {}) == []  # nothing to check
    code = tree.__class__(tree.workdir, tree.base_tree, ({"pkg/a.py": "x = 1\n"},))
    assert [c.name for c in detect_checks(code, {})] == ["ruff"]
    tested = code.__class__(code.workdir, code.base_tree, (*code.layers, {"tests/test_a.py": ""}))
    typed = {"pyproject.toml": "[tool.mypy]\nstrict = true\n"}
    names = [c.name for c in detect_checks(tested, typed, declared=["make lint"])]
    assert names == ["ruff", "pytest", "mypy", "make lint"]
    assert all(c.command[0] == sys.executable for c in detect_checks(tested, typed)[:3])
    web = tree.__class__(tree.workdir, tree.base_tree, ({"package.json": "", "Makefile": ""},))
    package = '{"scripts": {"test": "vitest", "lint": "eslint .", "dev": "vite"}}'
    configs = {"package.json": package, "Makefile": "all:\n\ttrue\ntest: all\n\tpytest\n"}
    names = [c.name for c in detect_checks(web, configs)]
    expected = ["npm lint", "npm test"] if shutil.which("node") and shutil.which("npm") else []
    assert names == [*expected, *(["make test"] if shutil.which("make") else [])]


def test_a_failure_points_at_the_files_its_output_names() -> None:
    run = CheckRun(
        name="pytest",
        command="pytest",
        status="failed",
        exit_code=1,
        duration_s=0.1,
        sandbox="process",
        output_tail="tests/test_core.py:14: AssertionError\nE   in pkg/core.py line 3",
    )
    paths = ["tests/test_core.py", "pkg/core.py", "pkg/core.pyc", "core.py", "README.md"]
    assert pointed_at([run], paths) == ["pkg/core.py", "tests/test_core.py"]


def _team(name: str, checks: list[str]) -> str:
    roles = [
        Role(id="PM", title="PM", phase="planning", track="p", instructions="Plan."),
        Role(
            id="PLATFORM_DEV",  # the offline model writes a pyproject and a package for it
            title="Platform developer",
            phase="implementation",
            track="i",
            depends_on=["PM"],
            instructions="Set up the project.",
            checks=checks,
        ),
    ]
    AgentTeam(roles=roles, fix_rounds=0, check_timeout_s=4.0).save(name)
    return name


def test_checks_that_hang_flood_or_get_killed_end_cleanly_and_the_verdict_says_which(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hang = "python -c 'import time; time.sleep(600)'"
    flood = "python -c \"import sys; sys.stdout.write('x' * 50_000_000); print('END')\""
    killed = "python -c 'import os; os._exit(137)'"
    team = _team(f"unruly-{uuid.uuid4().hex[:8]}", [hang, flood, killed])
    workdir = tmp_path / "app"

    code = main([f"An unruly build {uuid.uuid4()}", "--workdir", str(workdir), "--team", team])

    assert code == CHECKS_FAILED
    out = capsys.readouterr().out
    assert "agentmill build: completed" in out  # the summary table (tasks/cli/summary.py)
    (line,) = [line for line in out.splitlines() if line.startswith("verification ")]
    report = (workdir / ".tasks" / "report.json").read_text()

    [round_] = json.loads(report)["verification"]["rounds"]
    status = {c["name"]: c for c in round_["checks"]}
    assert status["ruff"]["status"] == "passed"
    assert status[hang]["status"] == "timeout" and status[hang]["exit_code"] is None
    assert "no end within 4s" in status[hang]["output_tail"]
    assert status[flood]["status"] == "passed" and status[flood]["output_tail"].endswith("END\n")
    assert "[output cut: the first" in status[flood]["output_tail"]
    assert status[killed]["status"] == "failed" and status[killed]["exit_code"] == 137
    assert json.loads(report)["verification"]["status"] == "failed"
    assert f"checks FAILED: {hang}, {killed}" in line
    # the phase still committed its files, and says how its checks went
    message = git(workdir, "log", "-1", "--format=%B")
    assert "Agentmill-Checks: implementation: checks FAILED" in message


def _wheel(name: str) -> bytes:
    """A minimal pure-Python wheel: a local dependency pip installs without any network."""
    info = f"{name}-0.1.dist-info"
    files = {
        f"{name}/__init__.py": b"ANSWER = 42\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
        archive.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return out.getvalue()


async def test_the_projects_own_dependencies_install_only_when_asked(tmp_path: Path) -> None:
    repo = tmp_path / "project"
    (repo / "vendor").mkdir(parents=True)
    (repo / "vendor" / "tinylib-0.1-py3-none-any.whl").write_bytes(_wheel("tinylib"))
    (repo / "requirements.txt").write_text("./vendor/tinylib-0.1-py3-none-any.whl\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "a project with a dependency")
    opened = open_repo(repo)
    base = tree_of(opened, opened.head.commit.hexsha)
    opened.close()
    test = "from tinylib import ANSWER\n\n\ndef test_answer() -> None:\n    assert ANSWER == 42\n"
    tree = CandidateTree(str(repo), base, ({"tests/test_answer.py": test},))
    spec = CheckSpec(
        name="pytest", command=[sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    )

    without = await run_check.fn(tree, spec)
    assert without.status == "failed" and without.missing_dependency == "tinylib"
    assert "install_deps (--install-deps)" in without.output_tail

    with_deps = await run_check.fn(tree, spec, install_deps=True)
    assert with_deps.status == "passed", with_deps.output_tail
