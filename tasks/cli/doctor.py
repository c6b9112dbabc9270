"""`agentmill doctor`: what a run needs, checked in a few seconds, with how to fix each gap.

Python and git versions, the Prefect API (a server at PREFECT_API_URL:
reachable, and which version; or the embedded one: its database and its
start-up limit), the Anthropic key (present, and from where: it is never
printed), a GitHub token when asked, bubblewrap for sandboxed checks, and
write access to the result storage (the agents' cache). It starts nothing:
the embedded server is not started (a first start takes half a minute), so
a credentials block is checked only against a running server.

Exit code 0 when nothing fails (warnings allowed: no key means the offline
model, no bubblewrap a scrubbed subprocess), 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import prefect
from prefect.settings import get_current_settings
from rich.table import Table
from rich.text import Text

from blocks.credentials import AnthropicCredentials, GitHubCredentials
from tasks.cli.prefect_api import (
    PrefectUnavailable,
    check_server,
    prefect_target,
    startup_timeout,
)
from tasks.cli.terminal import make_console
from tasks.common.credentials import (
    DEFAULT_ANTHROPIC_BLOCK,
    DEFAULT_GITHUB_BLOCK,
    CredentialsBlockMissing,
    load_credentials,
)
from tasks.common.errors import AgentmillError
from tasks.common.processes import run_process
from tasks.common.sandbox import default_sandbox

MIN_PYTHON = (3, 11)
# GIT_CONFIG_COUNT/KEY/VALUE (how the token reaches git, tasks/issues/clone.py) need git 2.31.
MIN_GIT = (2, 31)
PROBE_TIMEOUT_S = 5.0
Verdict = Literal["ok", "warn", "fail"]


@dataclass
class Check:
    name: str
    verdict: Verdict
    detail: str
    fix: str = ""


def check_python() -> Check:
    version = ".".join(str(p) for p in sys.version_info[:3])
    if sys.version_info[:2] >= MIN_PYTHON:
        return Check("python", "ok", version)
    return Check("python", "fail", version, "agentmill needs Python 3.11 or 3.12")


async def check_git() -> Check:
    git = shutil.which("git")
    if git is None:
        return Check("git", "fail", "not found", "install git (2.31 or later)")
    done = await run_process(
        [git, "--version"], cwd=Path.cwd(), env=_plain_env(), timeout_s=PROBE_TIMEOUT_S
    )
    found = re.search(r"(\d+)\.(\d+)", done.stdout)
    if not done.ok or found is None:
        return Check("git", "fail", f"`git --version` failed: {done.stderr.strip()[:200]}")
    version = (int(found.group(1)), int(found.group(2)))
    detail = done.stdout.strip().removeprefix("git version ")
    if version < MIN_GIT:
        return Check("git", "fail", detail, "upgrade git to 2.31 or later")
    return Check("git", "ok", detail)


def check_prefect() -> tuple[Check, bool]:
    """The Prefect check, and whether a server is up to look credentials blocks up in."""
    target = prefect_target()
    client = prefect.__version__
    if target.kind == "server":
        try:
            version = check_server(target.url)
        except PrefectUnavailable as exc:
            return Check("prefect api", "fail", target.url, str(exc)), False
        detail = f"{target.url}, server {version}, client {client}"
        if version.split(".")[:2] != client.split(".")[:2]:
            fix = f"use a Prefect {'.'.join(client.split('.')[:2])}.x server with this client"
            return Check("prefect api", "warn", detail, fix), True
        return Check("prefect api", "ok", detail), True
    if target.kind == "none":
        return Check(
            "prefect api",
            "fail",
            "PREFECT_API_URL is not set and the embedded server is off",
            "set PREFECT_API_URL to a server (`prefect server start`), or "
            "`prefect config set PREFECT_SERVER_EPHEMERAL_ENABLED=true`",
        ), False
    limit, own = startup_timeout()
    database = str(target.database) if target.database else "not SQLite"
    state = "not created yet: the first run sets it up (about half a minute)"
    detail = (
        f"embedded: each run starts a local server (client {client}); database {database}"
        f"{', ' + state if target.fresh else ''}; start-up limit {limit}s "
        f"({'your setting' if own else 'agentmill default'})"
    )
    return Check("prefect api", "ok", detail), False


async def check_anthropic(block: str, server_up: bool) -> Check:
    name = "anthropic key"
    try:
        creds = (
            await load_credentials(
                AnthropicCredentials, block, default_name=DEFAULT_ANTHROPIC_BLOCK
            )
            if server_up
            else None
        )
    except CredentialsBlockMissing as exc:
        return Check(name, "fail", f"no block {block!r}", str(exc))
    if creds is not None:
        return _key_check(name, creds.api_key.get_secret_value(), f"block {block!r}")
    key = os.environ.get("ANTHROPIC_API_KEY", "")
    unchecked = "" if server_up or not block else f" (block {block!r} not checked: no server)"
    if key:
        return _key_check(name, key, "ANTHROPIC_API_KEY" + unchecked)
    return Check(
        name,
        "warn",
        "none: runs use the offline model (placeholder output)" + unchecked,
        "export ANTHROPIC_API_KEY=sk-ant-..., or save an AnthropicCredentials block named "
        f"{DEFAULT_ANTHROPIC_BLOCK!r}",
    )


def _key_check(name: str, key: str, source: str) -> Check:
    if key.startswith("sk-ant-"):
        return Check(name, "ok", f"from {source}")
    return Check(
        name, "warn", f"from {source}, but it does not look like an Anthropic key",
        "an Anthropic API key starts with sk-ant-",
    )  # fmt: skip


async def check_github(block: str, server_up: bool) -> Check:
    name = "github token"
    try:
        creds = (
            await load_credentials(GitHubCredentials, block, default_name=DEFAULT_GITHUB_BLOCK)
            if server_up
            else None
        )
    except CredentialsBlockMissing as exc:
        return Check(name, "fail", f"no block {block!r}", str(exc))
    if creds is not None and creds.token.get_secret_value().strip():
        return Check(name, "ok", f"from block {block!r}")
    if os.environ.get("GITHUB_TOKEN", "").strip():
        return Check(name, "ok", "from GITHUB_TOKEN")
    return Check(
        name,
        "fail",
        "none",
        "export GITHUB_TOKEN=... (contents, issues and pull-request access), or save a "
        f"GitHubCredentials block named {DEFAULT_GITHUB_BLOCK!r}",
    )


def check_bubblewrap() -> Check:
    """What the sandbox (tasks.common.sandbox) will use here: bubblewrap, or the fallback."""
    name = "bubblewrap"
    quiet = logging.getLogger("agentmill.sandbox")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # its fallback warning: said here, as a check
    try:
        sandbox = default_sandbox()
    except AgentmillError as exc:  # AGENTMILL_SANDBOX=bwrap where bwrap cannot run
        return Check(name, "fail", "required by AGENTMILL_SANDBOX, but cannot run", str(exc))
    finally:
        quiet.setLevel(level)
    if sandbox.kind == "bwrap":
        return Check(name, "ok", "agent-written code runs in a sandbox with no network")
    fallback = "sandboxed checks run as a scrubbed plain subprocess, with a warning"
    if os.environ.get("AGENTMILL_SANDBOX", "").lower() == "process":
        return Check(name, "ok", f"not used (AGENTMILL_SANDBOX=process): {fallback}")
    if shutil.which("bwrap") is None:
        return Check(name, "warn", f"not installed: {fallback}", "apt-get install bubblewrap")
    return Check(
        name,
        "warn",
        f"installed, but cannot create its namespaces here: {fallback}",
        "allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1)",
    )


def check_storage() -> Check:
    name = "result storage"
    path = Path(get_current_settings().results.local_storage_path).expanduser()
    existing = next((p for p in (path, *path.parents) if p.exists()), Path("/"))
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".agentmill-doctor-"):
            pass
    except OSError as exc:
        return Check(
            name,
            "fail",
            f"{path}: cannot write in {existing} ({exc.strerror})",
            "make it writable, or point PREFECT_RESULTS_LOCAL_STORAGE_PATH somewhere that is",
        )
    created = "" if path.exists() else " (created by the first run)"
    return Check(name, "ok", f"{path}{created}")


def _plain_env() -> dict[str, str]:
    """What probes run with: a PATH and nothing else (no secret reaches them)."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


async def run_checks(anthropic_block: str, github_block: str | None) -> list[Check]:
    prefect_check, server_up = check_prefect()
    checks = [check_python(), await check_git(), prefect_check]
    checks.append(await check_anthropic(anthropic_block, server_up))
    if github_block is not None:
        checks.append(await check_github(github_block, server_up))
    checks += [check_bubblewrap(), check_storage()]
    return checks


DESCRIPTION = "Check Python, git, the Prefect API, the keys, bubblewrap and the result storage."


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--credentials",
        default=DEFAULT_ANTHROPIC_BLOCK,
        help=f"the AnthropicCredentials block runs would use (default {DEFAULT_ANTHROPIC_BLOCK})",
    )
    parser.add_argument(
        "--github", action="store_true", help="check for a GitHub token too (agentmill issues)"
    )
    parser.add_argument(
        "--github-credentials",
        default=DEFAULT_GITHUB_BLOCK,
        help=f"the GitHubCredentials block (default {DEFAULT_GITHUB_BLOCK})",
    )


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    checks = asyncio.run(
        run_checks(args.credentials, args.github_credentials if args.github else None)
    )
    console = make_console()
    table = Table.grid(padding=(0, 2))
    table.add_column(no_wrap=True)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")  # paths and commands whole, never cut with an ellipsis
    styles = {"ok": "green", "warn": "yellow", "fail": "bold red"}
    for check in checks:
        detail = Text(check.detail)
        if check.fix:
            detail.append(f"\nfix: {check.fix}", style="bold")
        table.add_row(Text(check.verdict, style=styles[check.verdict]), check.name, detail)
    console.print(Text("agentmill doctor", style="bold"))
    console.print(table)
    return 1 if any(c.verdict == "fail" for c in checks) else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agentmill doctor", description=__doc__)
    add_options(parser)
    return run(parser, parser.parse_args(argv))
