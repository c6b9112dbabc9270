"""The offline model's script for build_app's team: documents, and a small real Python project.

Each agent lists the tree, reads the brief and every dependency's output,
reads several files (the deepest first, then others that depend on the
role), writes, and submits. Planning and design roles write a document that
cites what they read. On a fresh tree (no pyproject.toml at its top) the
developers write a small but real project named from the idea's words: a
package, its pytest tests, a pyproject and a README, and the roles that
wrote tests run them before they submit. Its first implementation holds one
deliberate bug that a test catches (`Store.pending` returns the done items);
the fix agent the verification sends repairs it, so an offline build goes
fail -> fix -> pass with no network. On an existing project the developers
write documents only: the offline model never overwrites a user's code.

Replies depend only on the request, so they are deterministic, and a change
upstream changes what lands downstream.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from typing import Any

from tasks.agents.prompts import BRIEF_PATH
from tasks.agents.scripted import (
    Turn,
    all_results,
    files_read,
    first_look,
    listing_of,
    not_an_agent,
    pick_reads,
    reply_with,
    turn_of,
)
from tasks.common.git import EMPTY_TREE
from tasks.model.offline import system_text

OFFLINE_NOTICE = (
    "Written by agentmill's offline model: a placeholder, not a real design. "
    "Set ANTHROPIC_API_KEY (or an AnthropicCredentials block) to run the team on Claude."
)
# Every agent of this script makes this many model requests: look at the tree and its
# inputs, read files, write, submit; one more for those that run their tests.
REQUESTS_PER_AGENT = 4
# How many files of its view an agent reads before it writes.
FILES_READ = 4
# The roles that write tests, and run them before they submit (one more request).
TESTERS = ("CORE_DEV", "DB_DEV", "UNIT_TEST_DEV")
TEST_COMMAND = "python -m pytest -q -p no:cacheprovider"
_FIX = re.compile(r"^(?P<owner>[A-Z0-9_]+?)_FIX_\d+$")
_STOP = {"a", "an", "the", "with", "and", "or", "for", "to", "of", "in", "on", "that", "using"}
BUG = "return [item for item in self.items if item.done]"
FIXED = "return [item for item in self.items if not item.done]"


def requests_of(role: str) -> int:
    """How many requests the script's agent `role` makes on a fresh tree (fix agents run too)."""
    return REQUESTS_PER_AGENT + (role in TESTERS or bool(_FIX.match(role)))


def build_reply(request: dict[str, Any], *, project: bool = True) -> dict[str, Any]:
    """The assistant message the offline model sends for one request of build_app's team.

    `project=False` keeps to documents even on a fresh tree (the benchmark's
    orchestration runs, which must not time sandboxed test runs).
    """
    turn = turn_of(request)
    if turn is None:
        return not_an_agent(request)
    if _FIX.match(turn.role):
        return _fix_reply(request, turn)
    if turn.step == 0:
        calls = first_look(turn.deps)
        return reply_with(request, turn, "Looking at the tree, the brief and my inputs.", calls)
    if turn.step == 1:
        picks = pick_reads(listing_of(turn.messages), FILES_READ, turn.role)
        # nothing to read: look at the brief again (a turn is still a turn)
        reads = [("read_file", {"path": path}) for path in picks or [BRIEF_PATH]]
        return reply_with(request, turn, f"Reading {len(picks)} files of the tree.", reads)
    if turn.step == 2:
        files = _project_files(turn) if project else {}
        if not files:
            path = f"docs/{turn.role.lower().replace('_', '-')}.md"
            files = {path: _document(turn.role, system_text(request), turn.messages)}
        writes = [("write_file", {"path": p, "content": c}) for p, c in files.items()]
        return reply_with(request, turn, f"Writing {', '.join(files)}.", writes)
    if turn.step == 3 and project and turn.role in TESTERS and _fresh(turn):
        run = ("run", {"command": TEST_COMMAND})
        return reply_with(request, turn, "Running the tests before I submit.", [run])
    return reply_with(request, turn, "Done.", [("submit", _submission(turn))])


def _submission(turn: Turn) -> dict[str, Any]:
    role = turn.role
    warnings = ["offline model: placeholder output, not a real design"]
    ran = _last_run(turn.messages)
    if ran and not ran.startswith("exit code 0"):
        warnings.append(
            f"my tests fail ({ran.splitlines()[0]}); I submit anyway and leave them to the "
            "verification round (the offline model's deliberate slip)"
        )
    return {
        "summary": f"{role}: placeholder work by the offline model.",
        "decisions": [f"{role} followed its instructions (offline placeholder)."],
        "next_steps": ["Run again with ANTHROPIC_API_KEY set for real work."],
        "warnings": warnings,
    }


def _last_run(messages: list[dict[str, Any]]) -> str:
    """The answer to the conversation's last `run` call, if any."""
    from tasks.agents.scripted import result_for

    last = ""
    for message in messages:
        content = message.get("content")
        if message.get("role") == "assistant" and isinstance(content, list):
            for block in content:
                if block.get("type") == "tool_use" and block.get("name") == "run":
                    last = result_for(messages, str(block.get("id")))
    return last


# -- the project ---------------------------------------------------------------


def _fresh(turn: Turn) -> bool:
    """The build started from an empty tree: the offline model may start a project there.

    On any existing tree it writes documents only, so it never overwrites
    a user's code (it cannot tell a user's file from a dependency's).
    """
    return _brief(turn).get("base_tree") == EMPTY_TREE


def _brief(turn: Turn) -> dict[str, Any]:
    for result in all_results(turn.messages):
        try:
            data = json.loads(result)
        except ValueError:
            continue
        if isinstance(data, dict) and "idea" in data:
            return data
    return {}


def _idea(turn: Turn) -> str:
    return str(_brief(turn).get("idea", ""))


def package_name(idea: str) -> str:
    """A Python package name from the idea's first words: "A todo app with ..." -> todo_app."""
    words = [w for w in re.findall(r"[a-z]+", idea.lower()) if w not in _STOP and len(w) > 1]
    name = "_".join(words[:2]) or "project"
    if name in sys.stdlib_module_names or not name.isidentifier():
        name += "_project"
    return name


def _project_files(turn: Turn) -> dict[str, str]:
    """The files this role writes of the generated project; {} for documents (or not fresh)."""
    if not _fresh(turn):
        return {}
    idea = _idea(turn)
    pkg = package_name(idea)
    writers = {
        "PLATFORM_DEV": _platform,
        "CORE_DEV": _core,
        "DB_DEV": _storage,
        "UNIT_TEST_DEV": _roundtrip,
        "TECH_WRITER": _readme,
        "CI_ENGINEER": _ci,
    }
    writer = writers.get(turn.role)
    return writer(pkg, idea) if writer else {}


def _platform(pkg: str, idea: str) -> dict[str, str]:
    pyproject = (
        "[project]\n"
        f'name = "{pkg.replace("_", "-")}"\n'
        'version = "0.1.0"\n'
        f"description = {json.dumps(idea[:80])}\n"
        'requires-python = ">=3.10"\n\n'
        "[tool.pytest.ini_options]\n"
        'pythonpath = ["."]\n'
        'testpaths = ["tests"]\n\n'
        "[tool.ruff]\n"
        "line-length = 100\n"
    )
    init = f'"""{pkg}: generated by agentmill\'s offline model."""\n\n__version__ = "0.1.0"\n'
    return {"pyproject.toml": pyproject, f"{pkg}/__init__.py": init}


def _core(pkg: str, idea: str) -> dict[str, str]:
    core = f'''"""The core of {pkg}: items, and the store that keeps them in order.

Written by agentmill's offline model for the idea: {json.dumps(idea[:120])}
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Item:
    """One thing to do."""

    id: int
    title: str
    done: bool = False


@dataclass
class Store:
    """Items in the order they were added."""

    items: list[Item] = field(default_factory=list)

    def add(self, title: str) -> Item:
        """Add an item; titles are stripped and must not be empty."""
        title = title.strip()
        if not title:
            raise ValueError("an item needs a title")
        item = Item(id=len(self.items) + 1, title=title)
        self.items.append(item)
        return item

    def complete(self, item_id: int) -> Item:
        """Mark an item done."""
        for item in self.items:
            if item.id == item_id:
                item.done = True
                return item
        raise KeyError(item_id)

    def pending(self) -> list[Item]:
        """Items not done yet, oldest first."""
        {BUG}

    def summary(self) -> str:
        done = sum(1 for item in self.items if item.done)
        return f"{{done}} of {{len(self.items)}} done"
'''
    tests = f"""import pytest

from {pkg}.core import Store


def test_add_strips_and_numbers_items() -> None:
    store = Store()
    assert store.add("  buy milk ").title == "buy milk"
    assert store.add("call mum").id == 2


def test_an_empty_title_is_refused() -> None:
    with pytest.raises(ValueError, match="needs a title"):
        Store().add("   ")


def test_pending_leaves_out_what_is_done() -> None:
    store = Store()
    first, second = store.add("one"), store.add("two")
    store.complete(first.id)
    assert store.pending() == [second]
    assert store.summary() == "1 of 2 done"
"""
    return {f"{pkg}/core.py": core, "tests/test_core.py": tests}


def _storage(pkg: str, idea: str) -> dict[str, str]:
    storage = '''"""Keeping records on disk as JSON, replaced atomically: no half-written file."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def save(path: Path, records: list[dict[str, Any]]) -> None:
    """Write the records as JSON: a temp file in the same folder, then a rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(records, handle, indent=2)
    os.replace(tmp, path)


def load(path: Path) -> list[dict[str, Any]]:
    """The records saved at `path`; none if nothing was saved yet."""
    if not path.exists():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    return list(data)
'''
    tests = f"""from pathlib import Path

from {pkg}.storage import load, save


def test_records_survive_a_round_trip(tmp_path: Path) -> None:
    records = [{{"id": 1, "title": "one", "done": True}}]
    save(tmp_path / "items.json", records)
    assert load(tmp_path / "items.json") == records


def test_nothing_saved_loads_as_nothing(tmp_path: Path) -> None:
    assert load(tmp_path / "missing.json") == []
"""
    return {f"{pkg}/storage.py": storage, "tests/test_storage.py": tests}


def _roundtrip(pkg: str, idea: str) -> dict[str, str]:
    test = f"""from dataclasses import asdict
from pathlib import Path

from {pkg}.core import Item, Store
from {pkg}.storage import load, save


def test_a_store_survives_saving_and_loading(tmp_path: Path) -> None:
    store = Store()
    store.add("one")
    store.complete(1)
    store.add("two")
    save(tmp_path / "items.json", [asdict(item) for item in store.items])
    again = Store([Item(**record) for record in load(tmp_path / "items.json")])
    assert again.items == store.items
    assert [item.title for item in again.pending()] == ["two"]
"""
    return {"tests/test_roundtrip.py": test}


def _readme(pkg: str, idea: str) -> dict[str, str]:
    readme = (
        f"# {pkg}\n\n{idea}\n\n"
        "> Generated by agentmill's offline model: a small real project, not the app the "
        "idea describes. Set ANTHROPIC_API_KEY to build it with Claude.\n\n"
        "## Use\n\n"
        f"```python\nfrom {pkg}.core import Store\n\nstore = Store()\n"
        'store.add("write the README")\nprint(store.summary())\n```\n\n'
        "## Develop\n\n```bash\npip install pytest ruff\npytest\nruff check .\n```\n"
    )
    return {"README.md": readme}


def _ci(pkg: str, idea: str) -> dict[str, str]:
    workflow = (
        "name: ci\non: [push, pull_request]\njobs:\n  test:\n    runs-on: ubuntu-latest\n"
        "    steps:\n      - uses: actions/checkout@v4\n"
        "      - uses: actions/setup-python@v5\n        with:\n          python-version: '3.11'\n"
        "      - run: pip install pytest ruff\n      - run: ruff check .\n      - run: pytest\n"
    )
    return {".github/workflows/ci.yml": workflow}


# -- fix agents -----------------------------------------------------------------


def _fix_reply(request: dict[str, Any], turn: Turn) -> dict[str, Any]:
    """A fix agent: look, read the failing files and what they import, repair, rerun, submit."""
    if turn.step == 0:
        return reply_with(request, turn, "Looking at the failures.", first_look([])[:2])
    listing = listing_of(turn.messages)
    if turn.step == 1:
        named = [p for p in listing if p in system_text(request)]
        wanted = named + [p for p in _imported(named, listing, turn) if p not in named]
        reads = [("read_file", {"path": p}) for p in wanted or [BRIEF_PATH]]
        return reply_with(request, turn, f"Reading {len(wanted)} files.", reads)
    if turn.step == 2:
        fixed = {
            path: content.replace(BUG, FIXED)
            for path, content in files_read(turn.messages).items()
            if BUG in content
        }
        if not fixed:
            return reply_with(request, turn, "I found no cause.", [("submit", _fix_done(turn, {}))])
        writes = [("write_file", {"path": p, "content": c}) for p, c in fixed.items()]
        return reply_with(request, turn, f"Fixing {', '.join(fixed)}.", writes)
    if turn.step == 3:
        return reply_with(
            request, turn, "Rerunning the tests.", [("run", {"command": TEST_COMMAND})]
        )
    return reply_with(
        request, turn, "Done.", [("submit", _fix_done(turn, files_read(turn.messages)))]
    )


def _imported(paths: list[str], listing: list[str], turn: Turn) -> list[str]:
    """The project modules the named files import (a failing test's code under test)."""
    modules: list[str] = []
    for path in paths:
        for read_path, text in files_read(turn.messages).items():
            if read_path == path:
                for module in re.findall(r"^from ([\w.]+) import", text, re.M):
                    candidate = module.replace(".", "/") + ".py"
                    if candidate in listing:
                        modules.append(candidate)
    # not read yet at this step: guess from the test's name (tests/test_core.py -> */core.py)
    for path in paths:
        stem = path.rsplit("/", 1)[-1].removeprefix("test_")
        modules += [p for p in listing if p.endswith("/" + stem) and not p.startswith("tests/")]
    return list(dict.fromkeys(modules))


def _fix_done(turn: Turn, read: dict[str, str]) -> dict[str, Any]:
    fixed = any(BUG in content for content in read.values())
    summary = (
        f"{turn.role}: pending() returned the done items; it now returns the others."
        if fixed
        else f"{turn.role}: no cause found in the files the failures point at."
    )
    return {"summary": summary, "decisions": ["fixed the filter, not the test"] if fixed else []}


# -- documents --------------------------------------------------------------------


def _document(role: str, system: str, messages: list[dict[str, Any]]) -> str:
    brief: dict[str, Any] = {}
    inputs: list[str] = []
    for result in all_results(messages):
        try:
            data = json.loads(result)
        except ValueError:
            continue
        if isinstance(data, dict) and "idea" in data:
            brief = data
        elif isinstance(data, dict) and "summary" in data:
            inputs.append(f"- {data.get('role', '?')}: {data['summary']}")
    read = [
        f"- `{path}`: {_first_line(text)}" for path, text in sorted(files_read(messages).items())
    ]
    instructions = hashlib.sha256(system.encode()).hexdigest()[:12]
    lines = [
        f"# {role}: {brief.get('idea', '(idea not read)')}",
        "",
        f"> {OFFLINE_NOTICE}",
        "",
        f"Role {role}; instructions digest {instructions}.",
        "",
        "## Inputs read",
        *(inputs or ["- none"]),
        "",
        "## Files read",
        *(read or ["- none"]),
        "",
    ]
    feedback = brief.get("reviewer_feedback") or []
    if feedback:
        lines += ["## Reviewer feedback addressed", *(f"- {comment}" for comment in feedback), ""]
    return "\n".join(lines)


def _first_line(text: str) -> str:
    line = next((line.strip() for line in text.splitlines() if line.strip()), "(empty)")
    return line[:80].replace("`", "'")
