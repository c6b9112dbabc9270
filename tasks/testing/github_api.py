"""A fake GitHub REST API on loopback (real HTTP through uvicorn), recording what was done.

It serves what agentmill uses: the repository record, issues listed by label
(paginated with `Link`, with ETags and 304s, pull requests mixed in as GitHub
does) and one by one (with `updated_at`, which an edit moves), pull requests
(find by head, create, update), labels and comments. Tests inject
rate-limited responses, a server that sends `next` links forever, an action
run after a given request (an edit while a run works), hold pull-request
creation until a condition holds (to prove overlap and progress
deterministically), and read back every request.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tasks.testing.loopback import LoopbackServer


@dataclass
class Seen:
    method: str
    path: str
    query: str
    status: int
    authorization: str
    at: float


@dataclass
class Held:
    """Hold matching requests until `until()` is true (or `timeout_s` passes); then release all."""

    until: Callable[[], bool]
    timeout_s: float = 60.0
    timed_out: bool = False
    released: bool = False

    def ready(self) -> bool:
        self.released = self.released or self.until()
        return self.released


@dataclass
class FakeRepo:
    clone_url: str
    default_branch: str = "main"
    issues: dict[int, dict[str, Any]] = field(default_factory=dict)
    pulls: dict[int, dict[str, Any]] = field(default_factory=dict)
    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    next_number: int = 1


class FakeGitHub(LoopbackServer):
    """Start with `with FakeGitHub(token) as gh:`; `gh.api_url` is the API base URL."""

    name = "fake GitHub API"

    def __init__(self, token: str, page_size: int = 2) -> None:
        self.token = token
        self.page_size = page_size
        self.repos: dict[str, FakeRepo] = {}
        self.requests: list[Seen] = []
        self.rate_limits: list[tuple[str, dict[str, str], int]] = []
        self.pr_hold: Held | None = None
        self.pending_pr_creates = 0
        self.max_pending_pr_creates = 0
        self.label_calls: list[tuple[int, list[str]]] = []
        self.patches: list[int] = []
        self.endless_pages = False  # every page links to one more, as a hostile server might
        self._after: list[tuple[str, str, Callable[[], None]]] = []
        self._epoch, self._clock = int(time.time()), 0
        self._lock = threading.Lock()
        super().__init__(
            [
                Route("/repos/{owner}/{name}", self._repo),
                Route("/repos/{owner}/{name}/issues", self._issues),
                Route("/repos/{owner}/{name}/issues/{number:int}", self._issue),
                Route("/repos/{owner}/{name}/pulls", self._pulls, methods=["GET", "POST"]),
                Route("/repos/{owner}/{name}/pulls/{number:int}", self._pull, methods=["PATCH"]),
                Route(
                    "/repos/{owner}/{name}/issues/{number:int}/labels",
                    self._labels,
                    methods=["POST"],
                ),
                Route(
                    "/repos/{owner}/{name}/issues/{number:int}/comments",
                    self._comments,
                    methods=["GET", "POST"],
                ),
            ]
        )
        self.api_url = self.base_url

    # -- setup -------------------------------------------------------------------

    def add_repo(self, full_name: str, clone_url: str) -> FakeRepo:
        repo = self.repos[full_name] = FakeRepo(clone_url=clone_url)
        return repo

    def add_issue(
        self, full_name: str, title: str, body: str = "", labels: list[str] | None = None
    ) -> int:
        repo = self.repos[full_name]
        number = repo.next_number
        repo.next_number += 1
        repo.issues[number] = {
            "number": number,
            "title": title,
            "body": body,
            "state": "open",
            "labels": [{"name": label} for label in labels or []],
            "html_url": f"https://github.example/{full_name}/issues/{number}",
            "updated_at": self._now(),
        }
        return number

    def edit_issue(self, full_name: str, number: int, body: str) -> None:
        """Change an issue's text, as its author (or anyone with write access) can at any time."""
        self.repos[full_name].issues[number].update(body=body, updated_at=self._now())

    def after(self, method: str, suffix: str, action: Callable[[], None]) -> None:
        """Run `action` once, right after the first request matching `method` and `suffix`."""
        self._after.append((method, suffix, action))

    def _now(self) -> str:
        """Distinct, increasing timestamps in GitHub's format (a test's edits share a second)."""
        self._clock += 1
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._epoch + self._clock))

    def add_pull_item(self, full_name: str, title: str, labels: list[str]) -> int:
        """A pull request as the issues endpoint lists it (GitHub mixes them in)."""
        number = self.add_issue(full_name, title, "", labels)
        self.repos[full_name].issues[number]["pull_request"] = {"url": "..."}
        return number

    def rate_limit_next(self, path_suffix: str, status: int, headers: dict[str, str]) -> None:
        """The next request whose path ends with `path_suffix` gets this rate-limit answer."""
        self.rate_limits.append((path_suffix, headers, status))

    def seen(self, method: str, suffix: str) -> list[Seen]:
        return [r for r in self.requests if r.method == method and r.path.endswith(suffix)]

    def labels_of(self, full_name: str, number: int) -> list[str]:
        return [label["name"] for label in self.repos[full_name].issues[number]["labels"]]

    def _record(self, request: Request, status: int) -> None:
        with self._lock:
            for i, (method, suffix, action) in enumerate(self._after):
                if request.method == method and request.url.path.endswith(suffix):
                    del self._after[i]
                    action()
                    break
            self.requests.append(
                Seen(
                    request.method,
                    request.url.path,
                    request.url.query,
                    status,
                    request.headers.get("authorization", ""),
                    time.monotonic(),
                )
            )

    def _guard(self, request: Request) -> tuple[FakeRepo | None, Response | None]:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return None, self._answer(request, 401, {"message": "Bad credentials"})
        for i, (suffix, headers, status) in enumerate(self.rate_limits):
            if request.url.path.endswith(suffix):
                del self.rate_limits[i]
                body = {"message": "API rate limit exceeded"}
                return None, self._answer(request, status, body, headers)
        full = f"{request.path_params['owner']}/{request.path_params['name']}"
        repo = self.repos.get(full)
        if repo is None:
            return None, self._answer(request, 404, {"message": "Not Found"})
        return repo, None

    def _answer(
        self, request: Request, status: int, body: Any, headers: dict[str, str] | None = None
    ) -> Response:
        self._record(request, status)
        if status == 304:
            return Response(status_code=304, headers=headers)
        return JSONResponse(body, status_code=status, headers=headers)

    async def _repo(self, request: Request) -> Response:
        repo, error = self._guard(request)
        if error or repo is None:
            return error or Response(status_code=500)
        owner, name = request.path_params["owner"], request.path_params["name"]
        record = {
            "full_name": f"{owner}/{name}",
            "owner": {"login": owner},
            "clone_url": repo.clone_url,
            "default_branch": repo.default_branch,
        }
        return self._answer(request, 200, record)

    async def _issues(self, request: Request) -> Response:
        repo, error = self._guard(request)
        if error or repo is None:
            return error or Response(status_code=500)
        q = request.query_params
        wanted = [w for w in q.get("labels", "").split(",") if w]
        items = [
            issue
            for number, issue in sorted(repo.issues.items())
            if issue["state"] == q.get("state", "open")
            and all(w in [label["name"] for label in issue["labels"]] for w in wanted)
        ]
        return self._page(request, items)

    def _page(self, request: Request, items: list[Any]) -> Response:
        page = int(request.query_params.get("page", "1"))
        start = (page - 1) * self.page_size
        chunk = items[start : start + self.page_size]
        etag = '"' + hashlib.sha256(json.dumps(chunk, sort_keys=True).encode()).hexdigest() + '"'
        headers = {"etag": etag}
        if start + self.page_size < len(items) or self.endless_pages:
            params = dict(request.query_params)
            params["page"] = str(page + 1)
            headers["link"] = f'<{self.api_url}{request.url.path}?{urlencode(params)}>; rel="next"'
        if request.headers.get("if-none-match") == etag:
            return self._answer(request, 304, None, headers)
        return self._answer(request, 200, chunk, headers)

    async def _issue(self, request: Request) -> Response:
        repo, error = self._guard(request)
        if error or repo is None:
            return error or Response(status_code=500)
        issue = repo.issues.get(request.path_params["number"])
        if issue is None:
            return self._answer(request, 404, {"message": "Not Found"})
        return self._answer(request, 200, issue)

    async def _pulls(self, request: Request) -> Response:
        repo, error = self._guard(request)
        if error or repo is None:
            return error or Response(status_code=500)
        if request.method == "GET":
            head = request.query_params.get("head", "")
            state = request.query_params.get("state", "open")
            found = [
                pr
                for pr in repo.pulls.values()
                if pr["state"] == state and (not head or pr["head"]["label"] == head)
            ]
            return self._answer(request, 200, found)
        payload = json.loads(await request.body())
        await self._hold_pr_create()
        head_label = payload["head"]
        owner = request.path_params["owner"]
        if any(
            p["head"]["label"] == head_label and p["state"] == "open" for p in repo.pulls.values()
        ):
            return self._answer(
                request,
                422,
                {
                    "message": "Validation Failed",
                    "errors": [{"message": f"A pull request already exists for {head_label}."}],
                },
            )
        number = repo.next_number
        repo.next_number += 1
        full = f"{owner}/{request.path_params['name']}"
        pr = {
            "number": number,
            "title": payload["title"],
            "body": payload["body"],
            "draft": payload.get("draft", False),
            "state": "open",
            "base": {"ref": payload["base"]},
            "head": {"ref": head_label.split(":", 1)[1], "label": head_label},
            "html_url": f"https://github.example/{full}/pull/{number}",
        }
        repo.pulls[number] = pr
        return self._answer(request, 201, pr)

    async def _hold_pr_create(self) -> None:
        with self._lock:
            self.pending_pr_creates += 1
            self.max_pending_pr_creates = max(self.max_pending_pr_creates, self.pending_pr_creates)
        try:
            hold = self.pr_hold
            if hold is None:
                return
            deadline = time.monotonic() + hold.timeout_s
            while not hold.ready():
                if time.monotonic() > deadline:
                    hold.timed_out = True
                    return
                await asyncio.sleep(0.05)
        finally:
            with self._lock:
                self.pending_pr_creates -= 1

    async def _pull(self, request: Request) -> Response:
        repo, error = self._guard(request)
        if error or repo is None:
            return error or Response(status_code=500)
        number = request.path_params["number"]
        pr = repo.pulls.get(number)
        if pr is None:
            return self._answer(request, 404, {"message": "Not Found"})
        pr.update(
            {k: v for k, v in json.loads(await request.body()).items() if k in ("title", "body")}
        )
        self.patches.append(number)
        return self._answer(request, 200, pr)

    async def _labels(self, request: Request) -> Response:
        repo, error = self._guard(request)
        if error or repo is None:
            return error or Response(status_code=500)
        number = request.path_params["number"]
        labels = json.loads(await request.body())["labels"]
        self.label_calls.append((number, labels))
        issue = repo.issues[number]
        for label in labels:
            if label not in [existing["name"] for existing in issue["labels"]]:
                issue["labels"].append({"name": label})
        return self._answer(request, 200, issue["labels"])

    async def _comments(self, request: Request) -> Response:
        repo, error = self._guard(request)
        if error or repo is None:
            return error or Response(status_code=500)
        number = request.path_params["number"]
        comments = repo.comments.setdefault(number, [])
        if request.method == "GET":
            return self._page(request, comments)
        comment = {
            "id": 1000 + sum(len(c) for c in repo.comments.values()),
            "body": json.loads(await request.body())["body"],
            "html_url": f"https://github.example/comment/{number}",
        }
        comments.append(comment)
        return self._answer(request, 201, comment)
