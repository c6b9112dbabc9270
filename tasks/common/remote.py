"""Git that talks to a remote: authenticated by a host-scoped header, never prompting.

The token reaches git only through the environment of the git commands that
talk to the remote (`GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_0`/`GIT_CONFIG_VALUE_0`,
an `http.<origin>/.extraHeader` scoped to the URL's host): never in the remote
URL, `.git/config`, an argument list (which `ps` shows) or a log line, and
git's own error text is redacted before it is raised. Both pipelines use it:
the issue pipeline's clone and pushes, and build_app's builds on a remote.

Both flows also take the remote as a parameter (`repo_url`, `branch`) and can
work in a scratch directory: the parameter types below check a remote and a
branch name once, for both request models, and `clone_into_scratch` is the
one fresh-directory clone both use on a fleet worker (removed at the end: a
later run on another worker starts again from the remote).
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import httpx
from pydantic import AfterValidator, SecretStr

from tasks.common.errors import AgentmillError
from tasks.common.git import AGENTMILL
from tasks.common.processes import run_process
from tasks.common.secrets import redact

GIT_TIMEOUT_S = 600.0


class GitError(AgentmillError, RuntimeError):
    """A git command failed; the message holds git's own words, with any secret removed."""


@dataclass(frozen=True)
class GitAuth:
    """How git authenticates to the remote: an HTTP header, for http(s) clone URLs only."""

    clone_url: str
    token: SecretStr | None = field(default=None, compare=False)

    def env(self) -> dict[str, str]:
        """Environment for a git command that talks to the remote (the header, host-scoped)."""
        env = _base_env()
        url = httpx.URL(self.clone_url) if "://" in self.clone_url else None
        if self.token is not None and url is not None and url.scheme in ("http", "https"):
            origin = f"{url.scheme}://{url.netloc.decode()}/"
            basic = base64.b64encode(
                f"x-access-token:{self.token.get_secret_value()}".encode()
            ).decode()
            env.update(
                {
                    "GIT_CONFIG_COUNT": "1",
                    "GIT_CONFIG_KEY_0": f"http.{origin}.extraHeader",
                    "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}",
                }
            )
        return env

    def secrets(self) -> list[str]:
        """Strings that must never appear in output: the token and its header encoding."""
        if self.token is None:
            return []
        token = self.token.get_secret_value()
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        return [token, basic]


def _base_env() -> dict[str, str]:
    """A git environment that never prompts; the user's git config and proxies still apply."""
    keep = (
        "PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT", "XDG_CONFIG_HOME",
        "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy",
        "GIT_SSL_CAINFO", "SSL_CERT_FILE", "SSL_CERT_DIR",
    )  # fmt: skip
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(
        {
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": "",
            "SSH_ASKPASS": "",
            "GIT_AUTHOR_NAME": str(AGENTMILL.name),
            "GIT_AUTHOR_EMAIL": str(AGENTMILL.email),
            "GIT_COMMITTER_NAME": str(AGENTMILL.name),
            "GIT_COMMITTER_EMAIL": str(AGENTMILL.email),
        }
    )
    return env


async def git(
    *args: str,
    cwd: Path,
    auth: GitAuth | None = None,
    stdin: str | None = None,
    timeout_s: float = GIT_TIMEOUT_S,
    check: bool = True,
    extra_env: Mapping[str, str] | None = None,
) -> tuple[int, str]:
    """Run one git command and return (exit code, stdout); GitError if `check` and it fails."""
    env = auth.env() if auth is not None else _base_env()
    env.update(extra_env or {})
    secrets = auth.secrets() if auth is not None else []
    done = await run_process(
        ["git", *args],
        cwd=cwd,
        env=env,
        stdin=stdin.encode() if stdin is not None else None,
        timeout_s=timeout_s,
    )
    if done.timed_out:
        raise GitError(f"git {args[0]} took longer than {timeout_s:g}s in {cwd}")
    code = done.exit_code if done.exit_code is not None else -1
    stdout = redact(done.stdout, secrets)
    if check and code != 0:
        stderr = redact(done.stderr, secrets).strip()
        raise GitError(f"git {args[0]} failed in {cwd} (exit {code}): {stderr[-2000:]}")
    return code, stdout


CREDENTIALS_IN_URL = (
    "the remote URL carries credentials (user:token@, or a query string such as "
    "?access_token=); agentmill sends the token as a header (GITHUB_TOKEN or a "
    "GitHubCredentials block) and will not store it in .git/config: remove it from the URL"
)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
# HOST:PATH or USER@HOST:PATH, git's scp-like ssh syntax (git-clone(1), "GIT URLS"); a
# Windows drive ("C:/x") is one letter and not matched.
SCP_LIKE = re.compile(r"^(?:[^/@:]+@)?[^/:]{2,}:")
# What git-check-ref-format(1) refuses in a ref name, minus the rules checked separately.
BAD_REF_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def refuse_credentials_in(url: str) -> None:
    """A remote URL with credentials in it is refused: the header carries the token instead."""
    if _has_credentials(url):
        raise GitError(CREDENTIALS_IN_URL)


def _has_credentials(url: str) -> bool:
    """`user:token@` before the host, or any query string or fragment after the path.

    A git remote's URL has no use for a query string (git adds its own,
    `?service=`, per request), but hosts accept tokens in one (GitLab's
    `?private_token=`, `?access_token=`): git would keep it in .git/config
    and print it in its errors, so none is let through, whatever its name.
    """
    if "://" not in url:
        return False  # a path: `@`, `?` and `#` are the file name's
    rest = url.split("://", 1)[1]
    return "@" in rest.split("/", 1)[0] or "?" in rest or "#" in rest


def check_remote_url(url: str | None) -> str | None:
    """`repo_url` as a parameter: a repository path or an http(s)/file URL, no credentials in it.

    Checked with the other parameters, before a run exists; whether the remote
    is there is for the run to find out, on the worker that runs it
    (`reach_remote`): a path means a path on the worker.
    """
    if url is None:
        return None
    url = url.strip()
    if not url:
        raise ValueError("is empty; pass a bare repository's path or an https URL, or leave it out")
    if "://" not in url:
        if SCP_LIKE.match(url):
            raise ValueError(
                f"{url!r} is an ssh remote; agentmill authenticates with a token sent as an "
                "HTTP header, so pass the repository's https URL (or a path)"
            )
        return url
    if _has_credentials(url):
        raise ValueError(CREDENTIALS_IN_URL)
    parsed = httpx.URL(url)
    if parsed.scheme == "https" or parsed.scheme == "file":
        return url
    if parsed.scheme == "http" and parsed.host in LOOPBACK_HOSTS:
        return url  # a server on this machine: the token never leaves it
    raise ValueError(
        f"{url!r} is not a remote agentmill pushes to: pass an https URL (http only on "
        "loopback: the token would cross the network in clear) or a bare repository's path"
    )


def check_branch_name(name: str) -> str:
    """A branch name git accepts (git-check-ref-format(1), for `refs/heads/<name>`)."""
    name = name.strip()
    problem = (
        not name
        or name.startswith(("-", "/"))
        or name.endswith(("/", ".", ".lock"))
        or any(part.startswith(".") for part in name.split("/"))
        or ".." in name
        or "//" in name
        or "@{" in name
        or name == "@"
        or BAD_REF_CHARS.search(name)
    )
    if problem:
        raise ValueError(
            f"{name!r} is not a branch name git accepts; give one like agentmill/build (no "
            "spaces, '..', '~^:?*[\\', or leading '-')"
        )
    return name


# The parameter types build_app and process_issues share: one check for both request models
# (pydantic runs it in `validate`; the flow signature keeps it, so Prefect's own check does too).
RemoteUrl = Annotated[str | None, AfterValidator(check_remote_url)]
BranchName = Annotated[str, AfterValidator(check_branch_name)]


def locate_remote(url: str) -> str:
    """The URL git is given: a relative path is made absolute against this worker's cwd.

    Git runs the clone from the scratch directory, where a relative path would
    name something else.
    """
    if "://" in url:
        return url
    return os.path.abspath(os.path.expanduser(url))


async def reach_remote(url: str, auth: GitAuth) -> None:
    """Ask the remote for its HEAD: a missing path or a refused token fails here, before a clone."""
    refuse_credentials_in(url)  # before git sees it: an argument list is visible to `ps`
    try:
        await git("ls-remote", url, "HEAD", cwd=Path(tempfile.gettempdir()), auth=auth)
    except GitError as exc:
        where = "no git repository at that path" if "://" not in url else "git could not read it"
        raise GitError(
            f"the remote {url} cannot be reached ({where}); pass the path of a bare repository "
            f"(git init --bare) on the worker, or an https URL the token can read. {exc}"
        ) from None


@dataclass(frozen=True)
class ScratchClone:
    """A clone in a directory of its own under the scratch directory; nothing outlives the run."""

    url: str  # the remote as git was given it (a path made absolute)
    root: Path  # the run's own directory: removed whole
    path: Path  # the clone, at the root or inside it

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


async def clone_into_scratch(
    url: str, scratch: Path | None, auth: GitAuth, *, prefix: str, name: str = ""
) -> ScratchClone:
    """Reach `url`, then clone it (no checkout) into a fresh directory under `scratch`.

    `scratch` None is the system's temp directory; `name` puts the clone in a
    folder of that name inside the fresh directory (room beside it for
    worktrees). Whatever fails, nothing is left behind.
    """
    url = locate_remote(url)
    await reach_remote(url, auth)
    root = await asyncio.to_thread(_fresh_dir, scratch, prefix)
    path = root / name if name else root
    try:
        await clone_no_checkout(url, path, auth)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return ScratchClone(url, root, path)


async def clone_no_checkout(url: str, path: Path, auth: GitAuth) -> None:
    """`git clone --no-checkout`: the run's worktrees or checkout decide what goes on disk."""
    refuse_credentials_in(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    await git("clone", "--quiet", "--no-checkout", url, str(path), cwd=path.parent, auth=auth)


def _fresh_dir(scratch: Path | None, prefix: str) -> Path:
    if scratch is not None:
        scratch.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=scratch))
