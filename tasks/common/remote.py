"""Git that talks to a remote: authenticated by a host-scoped header, never prompting.

The token reaches git only through the environment of the git commands that
talk to the remote (`GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_0`/`GIT_CONFIG_VALUE_0`,
an `http.<origin>/.extraHeader` scoped to the URL's host): never in the remote
URL, `.git/config`, an argument list (which `ps` shows) or a log line, and
git's own error text is redacted before it is raised. Both pipelines use it:
the issue pipeline's clone and pushes, and build_app's builds on a remote.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from pydantic import SecretStr

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


def refuse_credentials_in(url: str) -> None:
    """A remote URL with `user:token@` in it is refused: the header carries the token instead."""
    if "@" in url.split("://", 1)[-1].split("/", 1)[0]:
        raise GitError(
            "the repository's clone_url carries credentials; agentmill authenticates with a "
            "header instead and will not store them in .git/config"
        )
