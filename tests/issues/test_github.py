"""The GitHub client against a fake REST API on loopback: pages, ETags, rate limits, errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import respx
from pydantic import SecretStr

from tasks.common.retry import Backoff
from tasks.common.secrets import redact
from tasks.issues.clone import GitAuth
from tasks.issues.github import MAX_PAGES, EtagCache, GitHub, GitHubAuth, GitHubError
from tasks.testing.github_api import FakeGitHub

TOKEN = "ghp_UNITTEST0123456789abcdefghijklmnopqrstu"
REPO = "acme/widgets"


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    with FakeGitHub(TOKEN, page_size=2) as api:
        api.add_repo(REPO, "/nowhere/remote.git")
        api.add_issue(REPO, "first", "body 1", ["agent:ready"])
        api.add_pull_item(REPO, "a pull request", ["agent:ready"])
        api.add_issue(REPO, "not labelled", "", ["other"])
        api.add_issue(REPO, "second", "body 2", ["agent:ready", "bug"])
        api.add_issue(REPO, "third", "", ["agent:ready"])
        yield api


def client(fake: FakeGitHub, token: str = TOKEN, **kwargs: object) -> GitHub:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    gh = GitHub(GitHubAuth(SecretStr(token), fake.api_url), sleep=sleep, **kwargs)  # type: ignore[arg-type]
    gh.waits = waits  # type: ignore[attr-defined]
    return gh


async def test_lists_labelled_issues_over_pages_without_pull_requests(fake: FakeGitHub) -> None:
    async with client(fake) as gh:
        issues = await gh.list_issues(REPO, "agent:ready")
    assert [i.title for i in issues] == ["first", "second", "third"]
    assert issues[1].labels == ["agent:ready", "bug"] and issues[1].body == "body 2"
    pages = fake.seen("GET", "/issues")
    assert len(pages) == 2 and "page=2" in pages[1].query  # 4 items (1 a PR), 2 per page


async def test_an_unchanged_page_is_a_304_and_the_cached_copy_is_used(fake: FakeGitHub) -> None:
    async with client(fake) as gh:
        first = await gh.list_issues(REPO, "agent:ready")
        again = await gh.list_issues(REPO, "agent:ready")
        assert gh.stats.not_modified == 2
    assert again == first
    assert [r.status for r in fake.seen("GET", "/issues")] == [200, 200, 304, 304]


async def test_rate_limits_are_waited_out_as_told_then_retried(fake: FakeGitHub) -> None:
    fake.rate_limit_next("/issues", 403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "0"})
    fake.rate_limit_next("/issues", 429, {"retry-after": "7"})
    async with client(fake) as gh:
        issues = await gh.list_issues(REPO, "agent:ready")
        assert gh.stats.rate_limited == 2
    assert len(issues) == 3
    assert gh.waits == [1.0, 7.0]  # type: ignore[attr-defined]  # reset in the past: 1s margin


async def test_a_rate_limit_longer_than_the_bound_fails_with_advice(fake: FakeGitHub) -> None:
    fake.rate_limit_next("/issues", 429, {"retry-after": "3600"})
    async with client(fake, backoff=Backoff(max_attempts=4, max_retry_after_s=60)) as gh:
        with pytest.raises(
            GitHubError, match=r"rate limit is exhausted for 3600s.*run again later"
        ):
            await gh.list_issues(REPO, "agent:ready")


@pytest.mark.parametrize(
    ("token", "repo", "message"),
    [
        (
            "ghp_wrong",
            REPO,
            r"rejected the token \(401 Bad credentials\); set a valid GITHUB_TOKEN",
        ),
        (TOKEN, "acme/nope", r"not found at .* \(404\); check OWNER/NAME"),
    ],
)
async def test_client_errors_say_what_to_fix(
    fake: FakeGitHub, token: str, repo: str, message: str
) -> None:
    async with client(fake, token=token) as gh:
        with pytest.raises(GitHubError, match=message) as caught:
            await gh.get_repo(repo)
    assert TOKEN not in str(caught.value) and "ghp_wrong" not in str(caught.value)


async def test_no_permission_says_so(fake: FakeGitHub) -> None:
    fake.rate_limit_next("/labels", 403, {})  # a 403 without rate-limit headers
    async with client(fake) as gh:
        with pytest.raises(GitHubError, match=r"may not do this \(403"):
            await gh.add_labels(REPO, 1, ["x"])


async def test_a_pagination_link_to_another_host_is_refused() -> None:
    api = "https://ghe.example/api/v3"
    with respx.mock(assert_all_called=False) as router:
        router.get(f"{api}/repos/{REPO}/issues").respond(
            200, json=[], headers={"link": '<https://evil.example/page2>; rel="next"'}
        )
        evil = router.get("https://evil.example/page2").respond(200, json=[])
        async with GitHub(GitHubAuth(SecretStr(TOKEN), api)) as gh:
            with pytest.raises(GitHubError, match="another host"):
                await gh.list_issues(REPO, "agent:ready")
        assert not evil.called


async def test_every_call_has_a_timeout() -> None:
    with respx.mock() as router:
        route = router.get("https://api.github.com/repos/acme/widgets").respond(
            200, json={"full_name": REPO, "clone_url": "x", "owner": {"login": "acme"}}
        )
        async with GitHub(GitHubAuth(SecretStr(TOKEN))) as gh:
            await gh.get_repo(REPO)
        timeout = route.calls.last.request.extensions["timeout"]
        assert all(timeout[k] for k in ("connect", "read", "write", "pool"))


def test_git_auth_is_a_host_scoped_header_in_the_environment_only() -> None:
    auth = GitAuth("https://ghe.example/acme/widgets.git", SecretStr(TOKEN))
    env = auth.env()
    assert env["GIT_CONFIG_KEY_0"] == "http.https://ghe.example/.extraHeader"
    assert env["GIT_CONFIG_VALUE_0"].startswith("Authorization: Basic ")
    assert TOKEN not in env["GIT_CONFIG_VALUE_0"]  # base64 of x-access-token:<token>
    assert "GIT_CONFIG_COUNT" not in GitAuth("/srv/remote.git", SecretStr(TOKEN)).env()
    secret_text = f"fatal: {TOKEN} and {auth.secrets()[1]}"
    assert redact(secret_text, auth.secrets()) == "fatal: [redacted] and [redacted]"
    assert TOKEN not in repr(auth)


async def test_a_server_that_pages_forever_is_stopped_at_the_cap(fake: FakeGitHub) -> None:
    """On main, `next` links were followed forever (3,000 requests before the harness stopped)."""
    fake.endless_pages = True
    async with client(fake) as gh:
        with pytest.raises(GitHubError, match=rf"kept sending pages past {MAX_PAGES}"):
            await gh.list_issues(REPO, "agent:ready")
    assert len(fake.seen("GET", "/issues")) == MAX_PAGES


async def test_the_etag_cache_keeps_only_the_pages_a_run_used(
    fake: FakeGitHub, tmp_path: Path
) -> None:
    """On main, every URL ever handed out stayed in the cache file, run after run."""
    path = tmp_path / "etags.json"
    stale = {"etag": '"old"', "body": [], "next_url": None}
    path.write_text(json.dumps({f"{fake.api_url}/repos/{REPO}/issues?page=9": stale}))
    async with client(fake, cache=EtagCache(path)) as gh:
        await gh.list_issues(REPO, "agent:ready")
        gh.cache.save()
    saved = json.loads(path.read_text())
    assert len(saved) == 2 and all("page=9" not in url for url in saved)
    async with client(fake, cache=EtagCache(path)) as gh:
        await gh.list_issues(REPO, "agent:ready")
        assert gh.stats.not_modified == 2  # what was kept still saves the requests


async def test_an_issue_is_read_fresh_with_its_updated_at(fake: FakeGitHub) -> None:
    async with client(fake) as gh:
        listed = (await gh.list_issues(REPO, "agent:ready"))[0]
        fake.edit_issue(REPO, listed.number, "an edited body")
        now = await gh.get_issue(REPO, listed.number)
    assert listed.updated_at and now.updated_at > listed.updated_at
    assert (listed.body, now.body) == ("body 1", "an edited body")
