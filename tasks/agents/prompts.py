"""What an agent is told: the system prompt, the pointer message and the tool schemas.

The context an agent starts with is deliberately small: a pointer message of
a few dozen tokens, and a system prompt in two blocks. The first block, with
the tool schemas before it, is the team's shared prefix: identical for every
agent of a build (the operating rules and the idea, nothing about the role),
so the agents of a build read one prompt-cache entry instead of each paying
for it. The second says who this agent is. Everything else an agent pulls
through tools, so it pays only for what it reads.

Any change to the text here changes what every agent sees, and the cache
keys of prompts and results alike: bump `PROMPTS_VERSION`, which is part of
every cache key.
"""

from __future__ import annotations

import re
from typing import Any

from blocks.team import Role

# v2: the run tool. v3: the idea moved into the shared system block, the role into a
# block of its own.
PROMPTS_VERSION = 3
BRIEF_PATH = ".tasks/manifest.json"

OPERATING_RULES = """\
You are one agent of agentmill, a team that builds software from an idea.
Work only through the tools. read_file and list_files show the build's base
tree plus the files written by the agents you depend on; read_output(role)
returns such an agent's summary and decisions. Your brief (your role and
your dependencies) is at .tasks/manifest.json. Record each file you produce
with write_file: its whole new content, at a relative path inside the
project, nothing under .git or .tasks; text only, at most 256,000 bytes a
file and 50 files. read_file cuts a file at 200,000 bytes and shows a binary
file as a note. run(command) runs one command (e.g. "python -m pytest -q") in
a sandbox over exactly what you see plus your writes so far, with no network,
and returns its exit code and output. If you wrote code or tests, run them
before you submit. A tool that fails answers with an error saying why: correct
the call rather than repeat it. Never write a key, token or password into a
file: the change is refused at the commit. Finish by calling submit exactly
once with a short summary, your decisions, next steps and warnings."""


def shared_prompt(idea: str) -> str:
    """The system block every agent of a build shares: the rules, then what it builds."""
    return f"{OPERATING_RULES}\n\nWhat the team is building:\n{idea}"


def role_prompt(role: Role) -> str:
    return f"Your role: {role.title} ({role.id}).\n{role.instructions}"


def system_prompt(role: Role, idea: str) -> list[str]:
    """The system prompt's blocks: the shared prefix first (cached once), then the role."""
    return [shared_prompt(idea), role_prompt(role)]


def pointer_message(role: Role) -> str:
    """The first user message: who you are, where the brief is, whom you depend on."""
    deps = ", ".join(role.depends_on) or "none"
    return f"Role: {role.id}. Brief: {BRIEF_PATH}. Dependencies: {deps}."


_POINTER = re.compile(r"Role: (?P<role>[A-Z0-9_]+)\b.*?Dependencies: (?P<deps>[^.]*)\.", re.S)


def parse_pointer(text: str) -> tuple[str, list[str]] | None:
    """(role, dependencies) of a pointer message; None for any other text."""
    match = _POINTER.search(text)
    if not match:
        return None
    deps = [d.strip() for d in match["deps"].split(",") if d.strip() and d.strip() != "none"]
    return match["role"], deps


TOOLS: list[dict[str, Any]] = [
    {
        "name": "list_files",
        "description": "List the files you can read (base tree plus your dependencies' files).",
        "input_schema": {
            "type": "object",
            "properties": {"prefix": {"type": "string", "description": "Only paths under this."}},
        },
    },
    {
        "name": "read_file",
        "description": "Read one file of the base tree or of your dependencies' outputs.",
        "input_schema": {
            "type": "object",
            "properties": {"path": {"type": "string"}},
            "required": ["path"],
        },
    },
    {
        "name": "read_output",
        "description": "Read a dependency's structured output: summary, decisions, files.",
        "input_schema": {
            "type": "object",
            "properties": {"role": {"type": "string"}},
            "required": ["role"],
        },
    },
    {
        "name": "write_file",
        "description": "Record a file of your change set (it lands at the phase commit).",
        "input_schema": {
            "type": "object",
            "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
            "required": ["path", "content"],
        },
    },
    {
        "name": "run",
        "description": (
            "Run one command in a sandbox over the files you see plus your writes (no network);"
            " returns its exit code and the tail of its output."
        ),
        "input_schema": {
            "type": "object",
            "properties": {"command": {"type": "string", "description": "e.g. pytest -q"}},
            "required": ["command"],
        },
    },
    {
        "name": "submit",
        "description": "Finish: your summary, decisions, next steps and warnings.",
        "input_schema": {
            "type": "object",
            "properties": {
                "summary": {"type": "string"},
                "decisions": {"type": "array", "items": {"type": "string"}},
                "next_steps": {"type": "array", "items": {"type": "string"}},
                "warnings": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["summary"],
        },
    },
]


def tools_for(result_schema: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The tool schemas for a role: `TOOLS`, with a required `result` on submit if it has one.

    Roles without a result schema get `TOOLS` itself, so what build_app's agents
    see (and their cache keys) does not change.
    """
    if result_schema is None:
        return TOOLS
    tools = [dict(tool) for tool in TOOLS]
    submit = next(tool for tool in tools if tool["name"] == "submit")
    schema = submit["input_schema"]
    submit["input_schema"] = {
        **schema,
        "properties": {**schema["properties"], "result": result_schema},
        "required": [*schema["required"], "result"],
    }
    submit["description"] = (
        "Finish: your summary, decisions, next steps and warnings, and your structured result."
    )
    return tools
