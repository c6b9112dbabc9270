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
from tasks.common.git import SYMLINK_MODE, TreeEntry, list_tree, read_blob
from tasks.common.gitignore import IgnoreRules, gitignore_files
from tasks.common.sandbox import SandboxLimits, default_sandbox
from tasks.common.trees import CandidateTree
from tasks.common.workspace import PathRejected, check_path, fold_name, fold_path

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
    # Top-level folders this run keeps agents out of, each with the reason ({".github": why}).
    protected_dirs: dict[str, str] = field(default_factory=dict)
    _ignore: IgnoreRules | None = field(default=None, init=False, repr=False)

    @cached_property
    def _tree(self) -> dict[str, TreeEntry]:
        return list_tree(self.workdir, self.base_tree)

    @cached_property
    def _base(self) -> dict[str, str]:
        return {path: entry.blob for path, entry in self._tree.items()}

    @cached_property
    def _links(self) -> set[str]:
        return {path for path, entry in self._tree.items() if entry.mode == SYMLINK_MODE}

    @cached_property
    def _seen(self) -> dict[str, str]:
        """Every file of the view before this agent wrote (base and upstream), by folded path."""
        return {fold_path(path): path for path in {*self._base, *self._upstream_files}}

    @cached_property
    def _seen_dirs(self) -> dict[str, str]:
        """Every folder of the view before this agent wrote, by folded path."""
        dirs: dict[str, str] = {}
        for path in {*self._base, *self._upstream_files}:
            parts = path.split("/")
            for depth in range(1, len(parts)):
                prefix = "/".join(parts[:depth])
                dirs.setdefault(fold_path(prefix), prefix)
        return dirs

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
        self._refuse_protected(path)
        self._refuse_clash(path)
        self._refuse_ignored(path, content)
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

    # -- what write_file refuses at once, so the model can correct it -------------
    # Each of these would otherwise surface only at the commit, after the agent's
    # money is spent, and its cached output would then fail every rerun the same way.

    def _refuse_protected(self, path: str) -> None:
        top = fold_name(path.split("/", 1)[0])
        for folder, why in self.protected_dirs.items():
            if top == fold_name(folder) and "/" in path:
                raise ToolError(f"write refused: {path} is under {folder}/, which {why}")

    def _refuse_clash(self, path: str) -> None:
        """A file over a folder, under a file or a link, or one differing only in case."""
        if path in self._links:
            raise ToolError(
                f"write refused: {path} is a symbolic link in the tree; agents write regular "
                "files only: write the file it stands for under its own path"
            )
        parts = path.split("/")
        folded = fold_path(path)
        for depth in range(1, len(parts)):
            prefix = "/".join(parts[:depth])
            if prefix in self._links:
                raise ToolError(
                    f"write refused: {path} goes through {prefix}, a symbolic link in the tree; "
                    "nothing is written through a link"
                )
            owner = self._file_at(fold_path(prefix), path)
            if owner is not None:
                raise ToolError(
                    f"write refused: {path} would put a file under {owner}, which is a file; "
                    "pick another path"
                )
            spelled = self._seen_dirs.get(fold_path(prefix), prefix)
            if spelled != prefix:
                raise ToolError(
                    f"write refused: {path}: {prefix} differs from {spelled} only in case or "
                    f"Unicode form, and on macOS and Windows they are one folder: write under "
                    f"{spelled}/"
                )
        folder = self._seen_dirs.get(folded) or next(
            (
                "/".join(own.split("/")[: len(parts)])
                for own in self.changes
                if fold_path(own).startswith(folded + "/")
            ),
            None,
        )
        if folder is not None:
            raise ToolError(
                f"write refused: {path} is a folder in your view ({folder}/ holds files); write "
                "a file inside it, or pick another name"
            )
        other = self._file_at(folded, path)
        if other is not None and other != path:
            raise ToolError(
                f"write refused: {path} differs from {other} only in case or Unicode form, and "
                f"on macOS and Windows they are one file: write {other} to change it, or pick "
                "another name"
            )

    def _file_at(self, folded: str, writing: str) -> str | None:
        """The view's file (this agent's own writes included) whose folded path is `folded`."""
        found = self._seen.get(folded)
        if found is not None:
            return found
        return next((p for p in self.changes if p != writing and fold_path(p) == folded), None)

    def _refuse_ignored(self, path: str, content: str) -> None:
        """A path git ignores: it would not be committed (or `git add` would fail)."""
        if path in self._base or path in self._upstream_files:
            return  # tracked, or written upstream (and checked then): git does not ignore those
        rules = self._ignore_rules({path: content} if path.endswith(".gitignore") else {})
        reason = rules.ignored([path]).get(path) if rules else None
        if reason is not None:
            raise ToolError(
                f"write refused: {path} is ignored by git ({reason}), so it would never be "
                "committed: write it elsewhere, or change that .gitignore first"
            )

    def _ignore_rules(self, pending: dict[str, str]) -> IgnoreRules | None:
        """The rules of the view's .gitignore files (this agent's own, and `pending`, on top)."""
        files = dict(self._base_ignores)
        for path in gitignore_files(self._upstream_files):
            files[path] = self._upstream_files[path].encode()
        for path in gitignore_files(self.changes):
            files[path] = self.changes[path].encode()
        files.update({path: text.encode() for path, text in pending.items()})
        if not files:
            return None
        if self._ignore is None or self._ignore.files != files:
            self._ignore = IgnoreRules(files)
        return self._ignore

    @cached_property
    def _base_ignores(self) -> dict[str, bytes]:
        return {p: read_blob(self.workdir, self._base[p]) for p in gitignore_files(self._base)}


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
