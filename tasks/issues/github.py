"""GitHub's REST API over one pooled `httpx.AsyncClient`: issues, pull requests, labels, comments.

One client per run, so every call shares a connection pool; every call has a
timeout and its status checked. Rate limits are waited out as told (a 403/429
with `x-ratelimit-remaining: 0` or `retry-after`, within a bound), 5xx and
dropped connections are retried with backoff (`tasks.common.retry`, as the
model client does); other 4xx fail at once with a message that says what to
fix. Listing issues sends `If-None-Match`, so a page that did not change
costs a 304 (free of the rate limit) and the cached copy is reused; the
cache can be kept on disk between scheduled runs, and keeps only the pages
the last run visited. A listing follows at most `MAX_PAGES` pages: a server
that sends `next` links forever gets an error, not a run that never ends.

The token lives in the client's default headers and nowhere else: not in a
URL, a log line, an exception or the ETag cache. A `Link` to another host is
refused, so the token is never sent anywhere but the configured API.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from pydantic import BaseModel, Field, SecretStr

from blocks.credentials import GitHubCredentials
from tasks.common.credentials import DEFAULT_GITHUB_BLOCK, load_credentials
from tasks.common.errors import AgentmillError
from tasks.common.logs import run_logger
from tasks.common.retry import Backoff, Transient, retrying
from tasks.common.workspace import atomic_write_json

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
REPO_PATTERN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
_LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="next"')
# 100 pages of 100 items: far more open issues (or comments) than a run works.
MAX_PAGES = 100


class GitHubError(AgentmillError, RuntimeError):
    """A GitHub call failed for good; the message says what to fix."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class GitHubAuth:
    """Where the API is and the token for it; `repr` never shows the token (SecretStr)."""

    token: SecretStr
    api_url: str = DEFAULT_API_URL


async def resolve_github(credentials_block: str = DEFAULT_GITHUB_BLOCK) -> GitHubAuth:
    """Token and API URL at run time: the named GitHubCredentials block, else GITHUB_TOKEN.

    The block is loaded when the run starts (see tasks.common.credentials), so a
    token saved or rotated in it is used by the next run without redeploying;
    the API is the block's `api_url`, else GITHUB_API_URL, else the public API.
    """
    api_url = os.environ.get("GITHUB_API_URL") or DEFAULT_API_URL
    creds = await load_credentials(
        GitHubCredentials, credentials_block, default_name=DEFAULT_GITHUB_BLOCK
    )
    if creds is not None:
        token = creds.token.get_secret_value()
        api_url = creds.api_url or api_url
    else:
        token = os.environ.get("GITHUB_TOKEN", "")
    if not token.strip():
        raise GitHubError(
            f"no GitHub token: set GITHUB_TOKEN, or save a GitHubCredentials block named "
            f"{DEFAULT_GITHUB_BLOCK!r} (or the name in the credentials parameter); the token "
            "needs contents, issues and pull-request access"
        )
    return GitHubAuth(token=SecretStr(token.strip()), api_url=api_url.rstrip("/"))


def check_repo_name(repo: str) -> str:
    if not REPO_PATTERN.match(repo):
        raise GitHubError(f"{repo!r} is not a repository name; pass it as OWNER/NAME")
    return repo


# --- records ---------------------------------------------------------------


class Issue(BaseModel):
    """An open issue, as much of it as the pipeline needs. Holds no secret: a flow parameter."""

    number: int
    title: str
    body: str = ""
    labels: list[str] = Field(default_factory=list)
    html_url: str = ""
    updated_at: str = Field(
        default="", description="When the issue last changed, as GitHub said when it was listed."
    )

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Issue:
        return cls(
            number=data["number"],
            title=data.get("title") or "",
            body=data.get("body") or "",
            labels=[
                label["name"] if isinstance(label, dict) else str(label)
                for label in data.get("labels", [])
            ],
            html_url=data.get("html_url") or "",
            updated_at=data.get("updated_at") or "",
        )


class Repository(BaseModel):
    full_name: str
    clone_url: str
    default_branch: str
    owner: str


class PullRequest(BaseModel):
    number: int
    html_url: str
    draft: bool = False
    head: str = ""

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> PullRequest:
        return cls(
            number=data["number"],
            html_url=data.get("html_url") or "",
            draft=bool(data.get("draft")),
            head=(data.get("head") or {}).get("ref", ""),
        )


class Comment(BaseModel):
    id: int
    body: str = ""
    html_url: str = ""


# --- policy and cache --------------------------------------------------------


# Rate limits are waited out as GitHub says, up to five minutes; 5xx and dropped
# connections are retried with backoff; four attempts in all.
GITHUB_BACKOFF = Backoff(
    max_attempts=4, base_delay_s=1.0, max_delay_s=30.0, max_retry_after_s=300.0
)
GITHUB_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


@dataclass
class _Cached:
    etag: str
    body: Any
    next_url: str | None


class EtagCache:
    """Pages of GET responses by URL, with their ETag; saved to disk between runs if given a path.

    Keys are URLs (no token, no header): two tokens that see different things
    get different ETags from GitHub anyway, and a 304 is only sent for a match.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._pages: dict[str, _Cached] = {}
        self._used: set[str] = set()  # URLs this run looked up or stored
        if path is not None and path.exists():
            try:
                raw = json.loads(path.read_text())
                self._pages = {url: _Cached(**entry) for url, entry in raw.items()}
            except (OSError, ValueError, TypeError):
                run_logger("agentmill.github").warning("ignoring an unreadable ETag cache %s", path)

    def get(self, url: str) -> _Cached | None:
        self._used.add(url)
        return self._pages.get(url)

    def put(self, url: str, entry: _Cached) -> None:
        self._used.add(url)
        self._pages[url] = entry

    def save(self) -> None:
        """Write the pages this run used; the rest (gone issues, old page URLs) are dropped.

        Without eviction the file grows with every URL a server ever handed out.
        """
        if self.path is not None:
            used = {u: vars(e) for u, e in self._pages.items() if u in self._used}
            atomic_write_json(self.path, used)


@dataclass
class CallStats:
    """What the run asked of GitHub: requests, 304s, rate-limit waits."""

    requests: int = 0
    not_modified: int = 0
    rate_limited: int = 0
    waited_s: float = 0.0


# --- the client --------------------------------------------------------------


class GitHub:
    """The REST endpoints agentmill uses, over one pooled client. Use `async with GitHub(...)`."""

    def __init__(
        self,
        auth: GitHubAuth,
        *,
        backoff: Backoff = GITHUB_BACKOFF,
        cache: EtagCache | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.api_url = auth.api_url.rstrip("/")
        self.backoff = backoff
        self.cache = cache or EtagCache()
        self.stats = CallStats()
        self._sleep = sleep
        self._origin = httpx.URL(self.api_url + "/").copy_with(path="/", query=None)
        self._client = httpx.AsyncClient(
            base_url=self.api_url + "/",
            headers={
                "Authorization": f"Bearer {auth.token.get_secret_value()}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": "agentmill",
            },
            timeout=GITHUB_TIMEOUT,
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
            transport=transport,
            follow_redirects=False,  # a redirect could carry the token elsewhere
        )

    async def __aenter__(self) -> GitHub:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- endpoints ------------------------------------------------------------

    async def get_repo(self, repo: str) -> Repository:
        check_repo_name(repo)
        data = await self._json("GET", f"repos/{repo}", what=f"read repository {repo}")
        return Repository(
            full_name=data["full_name"],
            clone_url=data["clone_url"],
            default_branch=data.get("default_branch") or "main",
            owner=(data.get("owner") or {}).get("login") or repo.split("/")[0],
        )

    async def list_issues(self, repo: str, label: str, per_page: int = 100) -> list[Issue]:
        """Open issues with `label`, every page, oldest first; pull requests filtered out."""
        params = {
            "state": "open",
            "labels": label,
            "per_page": str(per_page),
            "sort": "created",
            "direction": "asc",
        }
        items = await self._pages(f"repos/{repo}/issues", params, what=f"list issues of {repo}")
        return [Issue.from_api(item) for item in items if "pull_request" not in item]

    async def get_issue(self, repo: str, number: int) -> Issue:
        """The issue as it is now (its title, body and `updated_at`), not from any cache."""
        data = await self._json(
            "GET", f"repos/{repo}/issues/{number}", what=f"read issue #{number} of {repo}"
        )
        return Issue.from_api(data)

    async def find_open_pr(self, repo: str, owner: str, branch: str) -> PullRequest | None:
        """The open pull request whose head is `owner:branch`, if there is one."""
        params = {"state": "open", "head": f"{owner}:{branch}", "per_page": "10"}
        data = await self._json(
            "GET", f"repos/{repo}/pulls", params=params, what=f"list pull requests of {repo}"
        )
        matches = [PullRequest.from_api(d) for d in data]
        return matches[0] if matches else None

    async def create_pr(
        self, repo: str, *, title: str, head: str, base: str, body: str, draft: bool
    ) -> PullRequest:
        payload = {"title": title, "head": head, "base": base, "body": body, "draft": draft}
        data = await self._json(
            "POST", f"repos/{repo}/pulls", json_body=payload, what=f"open a pull request on {repo}"
        )
        return PullRequest.from_api(data)

    async def update_pr(self, repo: str, number: int, *, title: str, body: str) -> PullRequest:
        data = await self._json(
            "PATCH",
            f"repos/{repo}/pulls/{number}",
            json_body={"title": title, "body": body},
            what=f"update pull request #{number} of {repo}",
        )
        return PullRequest.from_api(data)

    async def add_labels(self, repo: str, issue: int, labels: list[str]) -> None:
        """Add labels to an issue (GitHub creates unknown ones); adding one twice is a no-op."""
        if labels:
            await self._json(
                "POST",
                f"repos/{repo}/issues/{issue}/labels",
                json_body={"labels": labels},
                what=f"label issue #{issue} of {repo}",
            )

    async def list_comments(self, repo: str, issue: int) -> list[Comment]:
        items = await self._pages(
            f"repos/{repo}/issues/{issue}/comments",
            {"per_page": "100"},
            what=f"read the comments of issue #{issue} of {repo}",
        )
        return [
            Comment(id=c["id"], body=c.get("body") or "", html_url=c.get("html_url") or "")
            for c in items
        ]

    async def create_comment(self, repo: str, issue: int, body: str) -> Comment:
        data = await self._json(
            "POST",
            f"repos/{repo}/issues/{issue}/comments",
            json_body={"body": body},
            what=f"comment on issue #{issue} of {repo}",
        )
        return Comment(
            id=data["id"], body=data.get("body") or "", html_url=data.get("html_url") or ""
        )

    # -- plumbing -------------------------------------------------------------

    async def _json(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json_body: Any = None,
        what: str,
    ) -> Any:
        response = await self._send(method, path, params=params, json_body=json_body, what=what)
        return response.json() if response.content else None

    async def _pages(self, path: str, params: dict[str, str], *, what: str) -> list[Any]:
        """Every page of a list endpoint, following `Link: rel="next"`, with ETag reuse."""
        items: list[Any] = []
        url: str | None = str(self._client.build_request("GET", path, params=params).url)
        seen: set[str] = set()
        while url is not None:
            if url in seen:
                raise GitHubError(f"GitHub's pagination loops at {url}; try again later")
            if len(seen) >= MAX_PAGES:
                raise GitHubError(
                    f"{what}: GitHub kept sending pages past {MAX_PAGES} (the last one linked "
                    f"to {url}); agentmill stops there rather than follow links forever. Narrow "
                    "the listing (a more specific label), or check GITHUB_API_URL"
                )
            seen.add(url)
            self._check_same_origin(url)
            cached = self.cache.get(url)
            headers = {"If-None-Match": cached.etag} if cached else {}
            response = await self._send("GET", url, headers=headers, what=what)
            if response.status_code == 304 and cached is not None:
                self.stats.not_modified += 1
                page, next_url = cached.body, cached.next_url
            else:
                page = response.json()
                next_url = _next_link(response.headers.get("link"))
                etag = response.headers.get("etag")
                if etag:
                    self.cache.put(url, _Cached(etag=etag, body=page, next_url=next_url))
            if not isinstance(page, list):
                raise GitHubError(f"{what}: expected a list from GitHub, got {type(page).__name__}")
            items.extend(page)
            url = next_url
        return items

    def _check_same_origin(self, url: str) -> None:
        target = httpx.URL(url)
        if (target.scheme, target.host, target.port) != (
            self._origin.scheme,
            self._origin.host,
            self._origin.port,
        ):
            raise GitHubError(
                f"GitHub sent a pagination link to another host ({target.host}); refusing to "
                "send the token there. Check GITHUB_API_URL or the block's api_url"
            )

    async def _send(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, str] | None = None,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        what: str,
    ) -> httpx.Response:
        async def attempt() -> httpx.Response:
            self.stats.requests += 1
            try:
                response = await self._client.request(
                    method, url, params=params, json=json_body, headers=headers
                )
            except httpx.TransportError as exc:
                if not _safe_to_resend(method, exc):
                    raise GitHubError(
                        f"{what}: no complete answer from {self.api_url} ({type(exc).__name__}); "
                        "not resent, as it may have been done: run again, and what was done "
                        "is found and reused"
                    ) from None
                raise Transient(f"cannot reach {self.api_url} ({type(exc).__name__})") from None
            status = response.status_code
            if status < 300 or status == 304:
                return response
            wait = _rate_limit_wait(response)
            if wait is not None:
                self.stats.rate_limited += 1
                if wait > self.backoff.max_retry_after_s:
                    raise GitHubError(
                        f"{what}: GitHub's rate limit is exhausted for {wait:.0f}s more, over the "
                        f"{self.backoff.max_retry_after_s:.0f}s this run may wait; run again later",
                        status,
                    )
                raise Transient(f"rate limited ({status})", retry_after_s=wait)
            if status >= 500 and method in _IDEMPOTENT:
                raise Transient(f"server error ({status})")
            raise GitHubError(_explain(status, what, response, self.api_url), status)

        def exhausted(fault: Transient, attempts: int) -> GitHubError:
            return GitHubError(
                f"{what}: {fault.what}, still failing after {attempts} attempts; check the "
                "network and GITHUB_API_URL, or run again later"
            )

        def waited(fault: Transient, seconds: float) -> None:
            self.stats.waited_s += seconds

        return await retrying(
            attempt,
            backoff=self.backoff,
            who=what,
            exhausted=exhausted,
            on_retry=waited,
            sleep=self._sleep,
        )


_IDEMPOTENT = {"GET", "HEAD", "PUT", "PATCH", "DELETE"}


def _safe_to_resend(method: str, exc: httpx.TransportError) -> bool:
    """Resend only what cannot do a thing twice: a POST may have landed before the error.

    A failed connection never sent the request; anything else on a POST (a read
    timeout, a dropped reply) may have opened the PR or posted the comment, and a
    rerun finds and reuses those instead.
    """
    if method in _IDEMPOTENT:
        return True
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)


def _next_link(link: str | None) -> str | None:
    if not link:
        return None
    match = _LINK_NEXT.search(link)
    return match.group(1) if match else None


def _rate_limit_wait(response: httpx.Response) -> float | None:
    """Seconds GitHub asks us to wait, or None when this is not a rate limit."""
    if response.status_code not in (403, 429):
        return None
    headers = response.headers
    retry_after = headers.get("retry-after")
    if retry_after is not None:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            return 60.0
    if headers.get("x-ratelimit-remaining") == "0":
        reset = headers.get("x-ratelimit-reset")
        try:
            return max(0.0, float(reset) - time.time()) + 1.0 if reset else 60.0
        except ValueError:
            return 60.0
    if response.status_code == 429:
        return 60.0  # GitHub's documented default for a secondary limit without headers
    return None


def _explain(status: int, what: str, response: httpx.Response, api_url: str) -> str:
    detail = _message_of(response)
    if status == 401:
        return (
            f"{what}: GitHub rejected the token (401 {detail}); set a valid GITHUB_TOKEN or fix "
            "the GitHubCredentials block's token"
        )
    if status == 403:
        return (
            f"{what}: the token may not do this (403 {detail}); give it contents, issues and "
            "pull-request write access to the repository"
        )
    if status == 404:
        return (
            f"{what}: not found at {api_url} (404); check OWNER/NAME, and that the token can "
            "see the repository (private repositories answer 404 to tokens without access)"
        )
    if status == 422:
        return f"{what}: GitHub refused the request as invalid (422 {detail})"
    return f"{what}: GitHub answered {status} ({detail})"


def _message_of(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.reason_phrase
    if isinstance(data, dict):
        message = str(data.get("message", response.reason_phrase))
        errors = data.get("errors")
        if isinstance(errors, list) and errors:
            details = [e.get("message", "") if isinstance(e, dict) else str(e) for e in errors]
            message += ": " + "; ".join(d for d in details if d)
        return message
    return response.reason_phrase
