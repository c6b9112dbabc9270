"""The review step's checks on a real tree: ruff, bandit, the secret scan and pytest, at once."""

from __future__ import annotations

from pathlib import Path

from tasks.common.secrets import scanning_for
from tasks.issues.checks import check_tree, has_tests

GH_TOKEN = "ghp_" + "A1b2C3d4" * 5
RUN_TOKEN = "a-very-private-run-token-value"


def write(root: Path, files: dict[str, str]) -> list[str]:
    for path, content in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(content)
    return sorted(files)


async def test_findings_of_every_tool_are_reported_and_redacted(tmp_path: Path) -> None:
    changed = write(
        tmp_path,
        {
            "pkg/run.py": "import os\nimport subprocess\n\n\ndef run(cmd: str) -> int:\n"
            "    return subprocess.call(cmd, shell=True)\n",
            "pkg/config.py": f'TOKEN = "{GH_TOKEN}"\nOTHER = "{RUN_TOKEN}"\n',
            "tests/test_pkg.py": f'def test_token() -> None:\n    assert "{GH_TOKEN}" == "x"\n',
        },
    )
    with scanning_for([RUN_TOKEN]):
        report = await check_tree(tmp_path, changed)
    tools = {t.tool: t for t in report.tools}
    assert [t.tool for t in report.tools] == ["ruff", "bandit", "secrets", "pytest"]

    assert any(f.code == "F401" and f.path == "pkg/run.py" for f in tools["ruff"].findings)
    shell = [f for f in tools["bandit"].findings if f.code == "B602"]
    assert shell and shell[0].severity == "error" and shell[0].path == "pkg/run.py"
    assert not any(f.code == "B101" for f in tools["bandit"].findings)  # asserts in tests are fine
    secrets = {(f.path, f.line, f.message.split(";")[0]) for f in tools["secrets"].findings}
    assert ("pkg/config.py", 1, "possible GitHub token") in secrets
    assert ("pkg/config.py", 2, "possible this run's own credential") in secrets
    assert tools["pytest"].status == "failed"
    assert tools["pytest"].findings[0].path == "tests/test_pkg.py"

    text = report.model_dump_json()
    assert GH_TOKEN not in text and RUN_TOKEN not in text  # findings land in a public PR
    assert "[redacted]" in text


async def test_a_clean_change_passes_and_missing_inputs_are_skipped(tmp_path: Path) -> None:
    report = await check_tree(tmp_path, write(tmp_path, {"README.md": "# hello\n"}))
    assert {t.tool: t.status for t in report.tools} == {
        "ruff": "skipped",
        "bandit": "skipped",
        "secrets": "passed",
        "pytest": "skipped",
    }
    assert not has_tests(tmp_path)


async def test_the_repository_tests_run_without_a_parent_directory_config(tmp_path: Path) -> None:
    # A parent's pytest config with an option the tests would choke on must not apply.
    (tmp_path / "pyproject.toml").write_text('[tool.pytest.ini_options]\naddopts = "--nope"\n')
    tree = tmp_path / "repo"
    tree.mkdir()
    changed = write(tree, {"test_ok.py": "def test_ok() -> None:\n    assert True\n"})
    report = await check_tree(tree, changed)
    pytest_run = next(t for t in report.tools if t.tool == "pytest")
    assert pytest_run.status == "passed" and pytest_run.summary == "1 passed"
