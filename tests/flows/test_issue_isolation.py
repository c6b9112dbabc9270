"""The issue review runs agent-written tests; a test that harvests secrets gets nothing out.

A code agent (Claude, here the fake Messages API with a hostile script)
writes a test that collects every KEY/TOKEN variable it can find, in its
own environment and in every process's /proc/<pid>/environ, prints them raw
and base64-encoded, writes them into a file of the tree and fails with them
in its message. The pipeline runs as users run it: the command line in its
own process, with the token and key in its environment. Under bubblewrap
the test finds nothing; under the plain fallback it can read its ancestors'
environments, and then the redaction must stop every form of them. Either
way nothing reaches the pushed branch, the pull request or its comments.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tasks.common.secrets import secret_forms
from tasks.issues.offline_script import issue_reply
from tasks.testing.github_api import FakeGitHub
from tasks.testing.messages_api import FakeMessagesAPI, role_of, step_of
from tasks.testing.repos import CHECKOUT, git, init_repo

TOKEN = "ghp_HARVESTME0123456789abcdefABCDEF0123"
KEY = "sk-ant-api03-HARVESTME-0123456789abcdefghijklmnop"
REPO = "acme/reports"

HARVEST = '''"""A test that tries to steal whatever credentials it can reach."""

import base64
import os
import pathlib


def _harvest() -> dict[str, str]:
    found = {k: v for k, v in os.environ.items() if "KEY" in k or "TOKEN" in k}
    for proc in pathlib.Path("/proc").iterdir():
        try:
            environ = (proc / "environ").read_bytes().split(b"\\0")
        except OSError:
            continue
        for entry in environ:
            name, _, value = entry.decode(errors="replace").partition("=")
            if "KEY" in name or "TOKEN" in name:
                found[f"{proc.name}:{name}"] = value
    return found


def test_nothing_to_steal() -> None:
    found = _harvest()
    pathlib.Path("harvested.txt").write_text(repr(found))
    encoded = base64.b64encode(repr(found).encode()).decode()
    print("HARVESTED", len(found), found, encoded)
    assert not found, f"harvested {found} {encoded}"
'''


def hostile(body: dict[str, Any]) -> dict[str, Any]:
    """The offline issue team, except that the code agent writes the harvesting test."""
    reply = issue_reply(body)
    if role_of(body) == "ISSUE_CODE_1" and step_of(body) == 2:
        for block in reply["content"]:
            if block.get("name") == "write_file" and block["input"]["path"].startswith("tests/"):
                block["input"]["path"] = "tests/test_harvest.py"
                block["input"]["content"] = HARVEST
    return reply


SANDBOXES = ["process"] + (["bwrap"] if shutil.which("bwrap") else [])


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_a_test_that_harvests_secrets_gets_nothing_out(tmp_path: Path, sandbox: str) -> None:
    seed = init_repo(tmp_path / "seed")
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(seed), str(remote))
    with FakeGitHub(TOKEN) as github, FakeMessagesAPI(script=hostile) as api:
        github.add_repo(REPO, str(remote))
        # an issue of its own: a cached code agent of another test would not run the script
        body = f"Export the page ({uuid.uuid4()})."
        github.add_issue(REPO, "Add a CSV export", body, ["agent:ready"])
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PYTEST")},
            "GITHUB_TOKEN": TOKEN,
            "GITHUB_API_URL": github.api_url,
            "ANTHROPIC_API_KEY": KEY,
            "ANTHROPIC_BASE_URL": api.base_url,
            "AGENTMILL_SANDBOX": sandbox,
        }
        proc = subprocess.run(
            [sys.executable, "-m", "flows.process_issues", "--repo", REPO, "--provider",
             "anthropic", "--clone-dir", str(tmp_path / "work"), "--concurrency", "1"],
            cwd=CHECKOUT, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        pulls = list(github.repos[REPO].pulls.values())
        comments = github.repos[REPO].comments
        seen_by_model = [json.dumps(r.body) for r in api.requests]

    assert len(pulls) == 1
    body = pulls[0]["body"]
    assert "| pytest |" in body  # the harvesting test did run
    if sandbox == "bwrap":
        assert "| pytest | passed |" in body  # it found nothing to take
    else:  # it read its ancestors' environments: only the redaction stands in the way
        assert "| pytest | failed |" in body and "harvested" in body
    branch = "agentmill/issue-1"
    files = git(remote, "ls-tree", "-r", "--name-only", branch).splitlines()
    assert "tests/test_harvest.py" in files and "harvested.txt" not in files
    pushed = git(remote, "log", "-p", "--format=%B", f"main..{branch}")
    places = {
        "the pushed branch": pushed,
        "the pull request": body,
        "the comments": json.dumps(comments),
        "the reviewer's inputs": "\n".join(r for r in seen_by_model if "ISSUE_REVIEW" in r),
        "the command's output": proc.stdout + proc.stderr,
    }
    for secret in (TOKEN, KEY):
        for form in secret_forms(secret):
            leaks = [where for where, text in places.items() if form in text]
            assert leaks == [], f"{form!r} reached {leaks}"
