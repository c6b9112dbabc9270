"""The agent's tools: what it can read (fixed by the graph) and its change set.

The view is the base tree plus its transitive dependencies' files, applied in
topological order; nothing else of the disk is reachable, so an agent's
output depends on its cache key's inputs and on nothing that timing changes.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from tasks.agents.errors import ToolError
from tasks.agents.prompts import BRIEF_PATH
from tasks.agents.schema import check_result
from tasks.common.git import list_tree, read_blob
from tasks.common.sandbox import SandboxLimits, default_sandbox
from tasks.common.trees import CandidateTree
from tasks.common.workspace import PathRejected, check_path

MAX_READ_BYTES = 200_000
RUN_OUTPUT_BYTES = 16_000  # what a `run` shows the model: the tail, where failures are


@dataclass(frozen=True)
class Limits:
    """Caps on one agent's change set and its `run` tool."""

    max_file_bytes: int = 256_000
    max_files: int = 50
    run_timeout_s: float = 120.0
    max_runs: int = 10


@dataclass
class Submission:
    summary: str
    decisions: list[str]
    next_steps: list[str]
    warnings: list[str]
    result: dict[str, Any] | None = None  # the structured answer, for roles that have a schema


@dataclass
class AgentView:
    """Read access for one agent: the brief, the base tree, its dependencies' outputs."""

    workdir: Path
    base_tree: str
    brief: dict[str, Any]
    upstream: list[Any]  # AgentOutput, in topological order (typed loosely to avoid a cycle)
    limits: Limits = field(default_factory=Limits)
    changes: dict[str, str] = field(default_factory=dict)
    runs: int = 0
    # When set, `submit` must carry a `result` object matching it (see `check_result`).
    result_schema: dict[str, Any] | None = None

    @cached_property
    def _base(self) -> dict[str, str]:
        return {path: entry.blob for path, entry in list_tree(self.workdir, self.base_tree).items()}

    @cached_property
    def _upstream_files(self) -> dict[str, str]:
        files: dict[str, str] = {}
        for output in self.upstream:
            files.update(output.files)
        return files

    def list_files(self, prefix: str = "") -> str:
        paths = sorted({*self._base, *self._upstream_files, BRIEF_PATH})
        return "\n".join(p for p in paths if p.startswith(prefix)) or "(no files)"

    def read_file(self, path: str) -> str:
        if path == BRIEF_PATH:
            return json.dumps(self.brief, indent=2)
        try:
            path = check_path(path)
        except PathRejected as exc:
            raise ToolError(str(exc)) from None
        if path in self._upstream_files:
            return self._upstream_files[path][:MAX_READ_BYTES]
        if path in self._base:
            return _as_text(path, read_blob(self.workdir, self._base[path]))
        raise ToolError(f"no file {path!r} in your view; list_files shows what there is")

    def read_output(self, role: str) -> str:
        for output in self.upstream:
            if output.role == role:
                record = {
                    "role": output.role,
                    "summary": output.summary,
                    "decisions": output.decisions,
                    "next_steps": output.next_steps,
                    "warnings": output.warnings,
                    "files": sorted(output.files),
                }
                result = getattr(output, "result", None)
                if result:  # only structured roles have one; others read exactly as before
                    record["result"] = result
                return json.dumps(record, indent=2)
        readable = ", ".join(o.role for o in self.upstream) or "none"
        raise ToolError(f"{role!r} is not one of your dependencies (readable: {readable})")

    def write_file(self, path: str, content: str) -> str:
        try:
            path = check_path(path)
        except PathRejected as exc:
            raise ToolError(f"write refused: {exc}") from None
        try:
            size = len(content.encode("utf-8"))
        except UnicodeEncodeError:
            raise ToolError(
                f"write refused: {path} is not valid UTF-8 text; write text files only"
            ) from None
        if "\x00" in content:
            raise ToolError(f"write refused: {path} holds NUL bytes; write text files only")
        if size > self.limits.max_file_bytes:
            raise ToolError(
                f"write refused: {path} is {size} bytes, over the cap of "
                f"{self.limits.max_file_bytes}; split it into smaller files"
            )
        if path not in self.changes and len(self.changes) >= self.limits.max_files:
            raise ToolError(f"write refused: at most {self.limits.max_files} files per agent")
        self.changes[path] = content
        return f"recorded {path} ({size} bytes)"

    async def run(self, command: str) -> str:
        """Run one command in the sandbox over exactly this view: base, dependencies, own writes."""
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise ToolError(
                f"run: the command does not parse ({exc}); quote it as a shell would"
            ) from None
        if not argv:
            raise ToolError("run: the command is empty")
        if self.runs >= self.limits.max_runs:
            raise ToolError(f"run: at most {self.limits.max_runs} commands per agent")
        self.runs += 1
        layers = (*(dict(o.files) for o in self.upstream), dict(self.changes))
        tree = CandidateTree(str(self.workdir), self.base_tree, layers)
        limits = SandboxLimits(timeout_s=self.limits.run_timeout_s, output_bytes=RUN_OUTPUT_BYTES)
        with tempfile.TemporaryDirectory(prefix="agentmill-run-") as scratch:
            copy = await asyncio.to_thread(tree.materialise, Path(scratch) / "tree")
            result = await default_sandbox().run(copy, argv, limits=limits)
        code = (
            "no exit code (killed)" if result.exit_code is None else f"exit code {result.exit_code}"
        )
        return (
            f"{code}; {result.status} in {result.duration_s:.1f}s ({result.sandbox} sandbox, "
            f"no network)\n{result.output}"
        )


def _as_text(path: str, data: bytes) -> str:
    """A base-tree file as the model sees it: text, or a note that it is binary."""
    if b"\x00" in data[:8192]:
        return f"({path} is a binary file of {len(data)} bytes; it cannot be shown as text)"
    text = data[:MAX_READ_BYTES].decode("utf-8", errors="replace")
    if len(data) > MAX_READ_BYTES:
        text += f"\n[... cut at {MAX_READ_BYTES} of {len(data)} bytes]"
    return text


async def call_tool(view: AgentView, name: str, args: Any) -> str | Submission:
    """Run one tool call; a Submission ends the loop. Raises ToolError for bad calls."""
    if not isinstance(args, dict):
        raise ToolError(f"{name}: arguments must be an object")
    try:
        if name == "list_files":
            return view.list_files(_str(args, "prefix", required=False))
        if name == "read_file":
            return view.read_file(_str(args, "path"))
        if name == "read_output":
            return view.read_output(_str(args, "role"))
        if name == "write_file":
            return view.write_file(_str(args, "path"), _str(args, "content", allow_empty=True))
        if name == "run":
            return await view.run(_str(args, "command"))
        if name == "submit":
            result: dict[str, Any] | None = None
            if view.result_schema is not None:
                if "result" not in args:
                    raise ToolError(
                        "submit: this role must pass `result`, an object matching its schema"
                    )
                check_result(args["result"], view.result_schema, "result")
                result = args["result"]
            return Submission(
                summary=_str(args, "summary"),
                decisions=_str_list(args, "decisions"),
                next_steps=_str_list(args, "next_steps"),
                warnings=_str_list(args, "warnings"),
                result=result,
            )
    except KeyError as exc:
        raise ToolError(f"{name}: missing argument {exc.args[0]!r}") from None
    raise ToolError(
        f"unknown tool {name!r}; use list_files, read_file, read_output, write_file, run or submit"
    )


def _str(
    args: dict[str, Any], key: str, *, required: bool = True, allow_empty: bool = False
) -> str:
    if key not in args:
        if required:
            raise KeyError(key)
        return ""
    value = args[key]
    if not isinstance(value, str):
        raise ToolError(f"argument {key!r} must be a string")
    if required and not allow_empty and not value.strip():
        raise ToolError(f"argument {key!r} must not be empty")
    return value


def _str_list(args: dict[str, Any], key: str) -> list[str]:
    value = args.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ToolError(f"argument {key!r} must be a list of strings")
    return value
