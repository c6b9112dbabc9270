"""`agentmill issues`: a real run against a fake GitHub, as plain lines and as a live view."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from rich.console import Console

from tasks.cli import issues as issues_command
from tasks.cli.main import main
from tasks.testing.github_api import FakeGitHub
from tasks.testing.repos import git, init_repo

TOKEN = "ghp_CLITEST0000000000000000000000000000000"
REPO = "acme/widgets"


def test_issues_are_reported_as_they_go_and_summed_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seed = init_repo(tmp_path / "seed")
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(seed), str(remote))
    clone_dir = tmp_path / "work"
    with FakeGitHub(TOKEN) as fake:
        fake.add_repo(REPO, str(remote))
        fake.add_issue(REPO, "Add a greeting helper", "Please add a helper.", ["agent:ready"])
        monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
        monkeypatch.setenv("GITHUB_API_URL", fake.api_url)
        args = ["issues", "--repo", REPO, "--clone-dir", str(clone_dir)]

        assert main(args) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[:3] == [
            f"{REPO}: 1 issue(s) to work, 3 at a time; OFFLINE MODEL: placeholder output, "
            "not real work",
            "#1: working on 'Add a greeting helper'",
            lines[2],
        ]
        assert re.match(r"#1: opened https://github\.example/acme/widgets/pull/\d+ \(", lines[2])
        summary = "\n".join(lines[3:])
        assert f"agentmill issues: {REPO}" in summary and "1 opened" in summary

        monkeypatch.setenv("TERM", "xterm-256color")
        console = Console(
            force_terminal=True,
            width=100,
            record=True,
            file=open(tmp_path / "tty", "w"),  # noqa: SIM115
        )
        monkeypatch.setattr(issues_command, "make_console", lambda: console)
        assert main(args) == 0  # again: the pull request is open, the issue is skipped
    text = console.export_text()
    assert len(text.split("agentmill issues  ")) > 2  # redrawn as it went
    assert re.search(r"#1\s+Add a greeting helper\s+skipped\s+https://github\.example", text)
    assert "1 skipped" in text
