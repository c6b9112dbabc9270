"""Fixture repositories that look like a user's: nested packages, tests, odd names, binaries.

Every repository a test builds on (build_app's base trees, the fake GitHub's
remotes, clones) starts from `write_project`: packages several levels deep,
a non-ASCII file name, an empty file, a binary file, a `.gitignore` and
ignored files on disk, and tests that pass. A flat toy tree hides bugs that
only show on real projects (GitPython's "Attribute 'path' unset" did).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

# The agentmill checkout these modules live in: the cwd of `python -m flows...` in tests.
CHECKOUT = Path(__file__).resolve().parents[2]
# A PNG header and a few bytes: NUL bytes, not UTF-8.
BINARY = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\xff\xfe\x00"
DEEP_FILE = "reports/formats/tabular/widths/columns.py"
NON_ASCII_FILE = "docs/café-notes.md"
EMPTY_FILE = "reports/__init__.py"
BINARY_FILE = "assets/logo.png"
IGNORED_FILES = ("debug.log", "build/output.txt", "reports/__pycache__/pages.cpython-311.pyc")

PROJECT: dict[str, str | bytes] = {
    ".gitignore": "*.log\nbuild/\n__pycache__/\n",
    "README.md": "# reports\n\nA small reporting service: pages of rows, exported as JSON.\n",
    "pyproject.toml": (
        '[project]\nname = "reports"\nversion = "0.1.0"\n\n'
        '[tool.pytest.ini_options]\npythonpath = ["."]\ntestpaths = ["tests"]\n'
    ),
    EMPTY_FILE: "",
    "reports/pages.py": (
        '"""The reports page: rows of (name, amount), sorted for display."""\n\n'
        "Row = tuple[str, int]\n\n\n"
        "def page(rows: list[Row]) -> list[Row]:\n"
        '    """Rows in the order the page shows them: largest amount first."""\n'
        "    return sorted(rows, key=lambda row: (-row[1], row[0]))\n"
    ),
    "reports/export.py": (
        '"""Exports of a report page."""\n\n'
        "import json\n\n"
        "from reports.pages import Row, page\n\n\n"
        "def to_json(rows: list[Row]) -> str:\n"
        '    """The page as a JSON list of objects."""\n'
        '    return json.dumps([{"name": n, "amount": a} for n, a in page(rows)])\n'
    ),
    "reports/formats/__init__.py": "",
    "reports/formats/tabular/__init__.py": "",
    "reports/formats/tabular/widths/__init__.py": "",
    DEEP_FILE: (
        '"""Column widths for fixed-width output."""\n\n\n'
        "def widths(rows: list[tuple[str, int]]) -> tuple[int, int]:\n"
        '    """The widest name and the widest amount, in characters."""\n'
        "    names = max((len(n) for n, _ in rows), default=0)\n"
        "    amounts = max((len(str(a)) for _, a in rows), default=0)\n"
        "    return names, amounts\n"
    ),
    "storage/__init__.py": '"""Where report rows are kept."""\n',
    "storage/memory.py": (
        '"""An in-memory store of report rows."""\n\n\n'
        "class Store:\n"
        "    def __init__(self) -> None:\n"
        "        self.rows: list[tuple[str, int]] = []\n\n"
        "    def add(self, name: str, amount: int) -> None:\n"
        "        self.rows.append((name, amount))\n"
    ),
    NON_ASCII_FILE: "# Notes\n\nAmounts are in euros (€); names hold any letter: Zoë, Łukasz.\n",
    BINARY_FILE: BINARY,
    "tests/test_reports.py": (
        "from reports.export import to_json\n"
        "from reports.formats.tabular.widths.columns import widths\n"
        "from reports.pages import page\n\n\n"
        "def test_page_sorts_largest_first() -> None:\n"
        '    assert page([("a", 1), ("b", 3)]) == [("b", 3), ("a", 1)]\n\n\n'
        "def test_json_export() -> None:\n"
        '    assert to_json([("a", 1)]) == \'[{"name": "a", "amount": 1}]\'\n\n\n'
        "def test_widths() -> None:\n"
        '    assert widths([("abc", 1000)]) == (3, 4)\n'
    ),
    "tests/test_storage.py": (
        "from storage.memory import Store\n\n\n"
        "def test_add_keeps_rows() -> None:\n"
        "    store = Store()\n"
        '    store.add("a", 1)\n'
        '    assert store.rows == [("a", 1)]\n'
    ),
}


def git(cwd: Path, *args: str) -> str:
    """Run git in `cwd` as a test's own user and return its stdout, stripped; raises on failure."""
    return subprocess.run(
        ["git", "-c", "user.name=dev", "-c", "user.email=dev@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def write_files(root: Path, files: dict[str, str | bytes]) -> None:
    for path, content in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")


def write_project(root: Path, extra: dict[str, str | bytes] | None = None) -> Path:
    """The fixture project (plus `extra` files) in `root`, with ignored files on disk too."""
    write_files(root, {**PROJECT, **(extra or {})})
    write_files(root, {path: "ignored by .gitignore\n" for path in IGNORED_FILES})
    return root


def init_repo(
    root: Path, extra: dict[str, str | bytes] | None = None, branch: str = "main"
) -> Path:
    """A git repository holding the fixture project in one commit on `branch`."""
    write_project(root, extra)
    git(root, "init", "-q", "-b", branch)
    git(root, "add", ".")
    git(root, "commit", "-qm", "project")
    return root


def tracked(root: Path) -> set[str]:
    """Every path HEAD holds (raw names: -z, so non-ASCII ones are not C-quoted)."""
    out = subprocess.run(
        ["git", "ls-tree", "-r", "-z", "--name-only", "HEAD"],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {path for path in out.split("\0") if path}
