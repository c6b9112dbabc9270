"""process_issues end to end: a fake GitHub on loopback, a local bare remote, the offline model.

One module-scoped first run is shared by the checks on it (PRs and bodies,
overlap, progress, isolation of a failure, no token anywhere); a rerun and an
update run follow on the same clone directory.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
)

from flows.process_issues import process_issues
from tasks.issues.github import GitHubError
from tasks.issues.pull_request import DONE_LABEL, comment_marker
from tasks.issues.report import IssuesSummary
from tasks.testing.github_api import FakeGitHub, Held
from tasks.testing.repos import CHECKOUT, git, init_repo

TOKEN = "ghp_E2ELEAKCHECK0123456789abcdefABCDEF0123"
BASIC = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
REPO = "acme/widgets"
FINISHED = re.compile(r"^issue #\d+ (opened|updated|skipped|unchanged|failed) \(")
ROOT = CHECKOUT


def make_remote(base: Path) -> Path:
    """A bare repository of the fixture project plus a calculator; issue-3 pushes are refused."""
    seed = init_repo(
        base / "seed",
        extra={
            "calc.py": '"""Arithmetic."""\n\n\ndef add(a: int, b: int) -> int:\n    return a + b\n',
            "tests/test_calc.py": (
                "from calc import add\n\n\ndef test_add() -> None:\n    assert add(2, 3) == 5\n"
            ),
        },
    )
    bare = base / "remote.git"
    git(base, "clone", "-q", "--bare", str(seed), str(bare))
    hook = bare / "hooks" / "pre-receive"
    hook.write_text(
        "#!/bin/sh\nwhile read old new ref; do\n"
        '  if [ "$ref" = refs/heads/agentmill/issue-3 ]; then\n'
        '    echo "policy: issue-3 may not be pushed" >&2; exit 1\n  fi\ndone\n'
    )
    hook.chmod(0o755)
    return bare


class Watch(logging.Handler):
    """Sets an event when a log line contains `needle` (the test's view of progress)."""

    def __init__(self, needle: str) -> None:
        super().__init__()
        self.needle = needle
        self.seen = threading.Event()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        self.lines.append(message)
        if self.needle in message:
            self.seen.set()


@dataclass
class World:
    fake: FakeGitHub
    remote: Path
    clone_dir: Path
    first: IssuesSummary
    hold: Held
    log_lines: list[str]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("issues")
    remote = make_remote(base)
    with FakeGitHub(TOKEN, page_size=2) as fake:
        fake.add_repo(REPO, str(remote))
        fake.add_issue(REPO, "Add a greeting helper", "Please add a helper.", ["agent:ready"])
        fake.add_issue(
            REPO,
            "Extend the calculator",
            "- [ ] Add subtract\n- [ ] then add multiply\n\n[offline: sloppy]",
            ["agent:ready"],
        )
        fake.add_issue(REPO, "Fix the broken division", "It crashes on zero.", ["agent:ready"])
        fake.add_pull_item(REPO, "A pull request, listed by the issues API", ["agent:ready"])
        fake.add_issue(REPO, "Not for agents", "", ["question"])
        now = str(int(time.time()))
        fake.rate_limit_next(
            "/issues", 403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": now}
        )

        # Issues 1 and 2 may open their PRs only when both are at that step at once (they
        # overlap) and issue 3's failure has been reported (results arrive as they happen).
        watch = Watch("issue #3 failed")
        flow_logger = logging.getLogger("prefect.flow_runs")
        flow_logger.addHandler(watch)
        fake.pr_hold = Held(until=lambda: fake.pending_pr_creates >= 2 and watch.seen.is_set())
        env = {"GITHUB_TOKEN": TOKEN, "GITHUB_API_URL": fake.api_url}
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            first = process_issues(
                repo=REPO, label="agent:ready", concurrency=3, clone_dir=str(base / "work")
            )
            yield World(fake, remote, base / "work", first, fake.pr_hold, watch.lines)
        finally:
            flow_logger.removeHandler(watch)
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def by_number(summary: IssuesSummary) -> dict[int, object]:
    return {i.number: i for i in summary.issues}


def test_each_labelled_issue_gets_one_pull_request_with_a_body_from_the_agents(
    world: World,
) -> None:
    fake, first = world.fake, world.first
    assert [(i.number, i.status) for i in first.issues] == [
        (1, "opened"),
        (2, "opened"),
        (3, "failed"),
    ]  # the PR item (4) and the unlabelled issue (5) are not worked
    pulls = fake.repos[REPO].pulls
    assert sorted(p["head"]["ref"] for p in pulls.values()) == [
        "agentmill/issue-1",
        "agentmill/issue-2",
    ]
    for result in first.issues[:2]:
        pr = next(p for p in pulls.values() if p["head"]["ref"] == result.branch)
        assert result.pr_url == pr["html_url"] and pr["base"]["ref"] == "main"
        assert pr["draft"] is False and result.score == 100 and result.tokens > 0
        body = pr["body"]
        assert body.startswith(f"Resolves #{result.number}.")
        for part in ("offline model", "## Triage", "## Plan", "## Changes", "## Review: 100/100"):
            assert part in body
        assert "| ruff | passed |" in body and "| pytest | passed |" in body
        assert "| bandit | passed |" in body and "| secrets | passed |" in body
        assert f"agentmill_offline/issue_{result.number}_1.py" in body
        comments = fake.repos[REPO].comments[result.number]
        assert len(comments) == 1 and pr["html_url"] in comments[0]["body"]
        labels = fake.labels_of(REPO, result.number)
        assert DONE_LABEL in labels and any(label.startswith("type:") for label in labels)

    two = next(p for p in pulls.values() if p["head"]["ref"] == "agentmill/issue-2")["body"]
    assert "1. **Add subtract**" in two and "2. **then add multiply** (after 1)" in two
    assert "The first review scored 80/100 and asked for 2 fix(es)" in two
    assert "ISSUE_CODE_1_FIX" in two


def test_branches_hold_the_code_the_tests_and_the_trailers(world: World) -> None:
    remote = world.remote
    branches = git(remote, "branch", "--list", "agentmill/*").split()
    assert branches == ["agentmill/issue-1", "agentmill/issue-2"]
    files = git(remote, "ls-tree", "-r", "--name-only", "agentmill/issue-2").splitlines()
    for name in ("issue_2_1", "issue_2_2"):
        assert (
            f"agentmill_offline/{name}.py" in files and f"tests/test_agentmill_{name}.py" in files
        )
    fixed = git(remote, "show", "agentmill/issue-2:agentmill_offline/issue_2_2.py")
    assert "import os" not in fixed and "BUILDS_ON: list[str] = ['issue_2_1']" in fixed
    message = git(remote, "log", "-1", "--format=%B", "agentmill/issue-2")
    assert message.startswith("agentmill: resolve #2: Extend the calculator")
    assert f"Agentmill-Issue: {REPO}#2" in message
    assert f"Agentmill-Run: {world.first.run_id}" in message
    assert "Agentmill-Agent: ISSUE_TRIAGE key=" in message
    assert "Agentmill-Agent: ISSUE_CODE_2_FIX key=" in message
    assert git(remote, "rev-list", "--count", "main..agentmill/issue-1") == "1"


def test_a_failing_issue_is_reported_and_the_others_succeed(world: World) -> None:
    failed = by_number(world.first)[3]
    assert failed.status == "failed"  # type: ignore[attr-defined]
    assert "policy: issue-3 may not be pushed" in failed.error  # type: ignore[attr-defined]
    assert failed.pr_url is None and failed.agents > 0  # type: ignore[attr-defined]
    assert 3 not in world.fake.repos[REPO].comments


def test_subflows_overlapped_and_results_arrived_as_they_happened(world: World) -> None:
    assert world.fake.max_pending_pr_creates == 2
    assert not world.hold.timed_out  # released by issue 3's report, not by the timeout
    finished = [line for line in world.log_lines if FINISHED.match(line)]
    assert finished[0].startswith("issue #3 failed (1/3)")

    async def child_runs() -> list[tuple[str, float, float]]:
        async with get_client() as client:
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[world.first.run_id])
                )
            )
        return [
            (r.name, r.start_time.timestamp(), r.end_time.timestamp())
            for r in runs
            if r.start_time and r.end_time
        ]

    runs = {name: (start, end) for name, start, end in asyncio.run(child_runs())}
    assert {"issue-1", "issue-2", "issue-3"} <= set(runs)
    (s1, e1), (s2, e2) = runs["issue-1"], runs["issue-2"]
    assert s1 < e2 and s2 < e1  # the two subflows ran at the same time


def test_the_summary_is_a_table_artifact_and_progress_reached_100(world: World) -> None:
    async def artifacts() -> list[tuple[str | None, str, object]]:
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[world.first.run_id])
                )
            )
        return [(a.key, a.type or "", a.data) for a in found]

    found = asyncio.run(artifacts())
    table = next(data for key, kind, data in found if kind == "table")
    assert "#1" in str(table) and "failed" in str(table)
    progress = [data for key, kind, data in found if kind == "progress"]
    assert progress == [100.0]


def test_the_token_appears_in_no_log_artifact_config_file_or_commit(world: World) -> None:
    haystacks = {
        "summary": world.first.model_dump_json(),
        "remote history": git(world.remote, "log", "--all", "-p", "--format=%H%n%B"),
        "PR bodies": str(world.fake.repos[REPO].pulls),
        "comments": str(world.fake.repos[REPO].comments),
        "log lines": "\n".join(world.log_lines),
    }
    for path in world.clone_dir.rglob("*"):  # .git/config, worktrees, the ETag cache...
        if path.is_file():
            haystacks[str(path)] = path.read_bytes().decode("utf-8", errors="replace")
    assert any(p.endswith("/.git/config") for p in haystacks)

    async def from_api() -> dict[str, str]:
        async with get_client() as client:
            await asyncio.sleep(1.0)  # the log handler ships batches every 0.3 s
            children = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[world.first.run_id])
                )
            )
            ids = [world.first.run_id, *(str(r.id) for r in children)]
            logs = await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)), limit=200
            )
            artifacts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids))
            )
        return {
            "api logs": "\n".join(log.message for log in logs),
            "api artifacts": "\n".join(str(a.data) for a in artifacts),
            "api flow-run parameters": "\n".join(str(r.parameters) for r in children),
        }

    haystacks.update(asyncio.run(from_api()))
    assert "issue #3 failed" in haystacks["api logs"]  # the search does reach them
    leaks = [w for w, text in haystacks.items() if TOKEN in text or BASIC in text]
    assert leaks == []
    assert all(r.authorization == f"Bearer {TOKEN}" for r in world.fake.requests)


def test_a_rerun_opens_nothing_new_and_an_update_run_updates_in_place(world: World) -> None:
    fake = world.fake
    before = (
        len(fake.repos[REPO].pulls),
        {n: len(c) for n, c in fake.repos[REPO].comments.items()},
        {n: fake.labels_of(REPO, n) for n in (1, 2)},
        git(world.remote, "rev-parse", "agentmill/issue-1", "agentmill/issue-2"),
    )
    fake.pr_hold = None
    not_modified = len([r for r in fake.seen("GET", "/issues") if r.status == 304])
    env = {"GITHUB_TOKEN": TOKEN, "GITHUB_API_URL": fake.api_url}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        again = process_issues(repo=REPO, concurrency=3, clone_dir=str(world.clone_dir))
        updated = process_issues(
            repo=REPO, concurrency=3, clone_dir=str(world.clone_dir), existing_pr="update"
        )
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    assert [(i.number, i.status) for i in again.issues] == [
        (1, "skipped"),
        (2, "skipped"),
        (3, "failed"),
    ]
    assert again.issues[0].pr_url == world.first.issues[0].pr_url
    assert again.issues[2].cached_agents == again.issues[2].agents > 0  # reran from the cache
    assert [(i.number, i.status) for i in updated.issues][:2] == [(1, "updated"), (2, "updated")]
    after = (
        len(fake.repos[REPO].pulls),
        {n: len(c) for n, c in fake.repos[REPO].comments.items()},
        {n: fake.labels_of(REPO, n) for n in (1, 2)},
        git(world.remote, "rev-parse", "agentmill/issue-1", "agentmill/issue-2"),
    )
    assert after == before  # no PR, comment, label or commit more
    assert sorted(fake.patches) == sorted(fake.repos[REPO].pulls)  # bodies updated in place
    assert len([r for r in fake.seen("GET", "/issues") if r.status == 304]) > not_modified


def test_a_bad_token_fails_at_once_with_what_to_fix(
    world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_not-the-right-one")
    monkeypatch.setenv("GITHUB_API_URL", world.fake.api_url)
    with pytest.raises(GitHubError, match=r"rejected the token \(401.*set a valid GITHUB_TOKEN"):
        process_issues(repo=REPO, clone_dir=str(tmp_path / "work"))
    assert not (tmp_path / "work" / "acme").exists()


def test_cli_help_documents_every_option() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "flows.process_issues", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0
    options = ("--repo", "--label", "--concurrency", "--clone-dir", "--credentials", "--repo-url",
               "--branch", "--scratch-dir")  # fmt: skip
    for option in options:
        assert option in proc.stdout


def test_comment_marker_is_hidden_markdown() -> None:
    assert comment_marker(7).startswith("<!--") and comment_marker(7).endswith("-->")
