"""write_file refuses at once what could only fail at the commit, as an error the model can fix."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tasks.agents.errors import ToolError
from tasks.agents.output import AgentOutput
from tasks.agents.tools import AgentView, call_tool
from tasks.testing.repos import git, init_repo

GITHUB_WHY = "holds CI workflows; this run does not let agents change it"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The fixture project (a .gitignore, nested packages) with a file link and a folder link."""
    root = init_repo(tmp_path_factory.mktemp("base") / "repo")
    (root / "git-config").symlink_to(".git/config")
    (root / "gitlink").symlink_to(".git")
    (root / "sub").mkdir()
    (root / "sub" / ".gitignore").write_text("secret/\n!keep.log\n")
    git(root, "add", "git-config", "gitlink", "sub/.gitignore")
    git(root, "commit", "-qm", "links and a nested .gitignore")
    return root, git(root, "rev-parse", "HEAD^{tree}")


def view(base: tuple[Path, str], *upstream: AgentOutput, protected: bool = False) -> AgentView:
    root, tree = base
    return AgentView(
        workdir=root,
        base_tree=tree,
        brief={},
        upstream=list(upstream),
        protected_dirs={".github": GITHUB_WHY} if protected else {},
    )


def upstream(role: str, files: dict[str, str]) -> AgentOutput:
    return AgentOutput(role=role, summary="s", files=files, model="m", provider="offline")


def write(v: AgentView, path: str, content: str = "text\n") -> str:
    result = asyncio.run(call_tool(v, "write_file", {"path": path, "content": content}))
    assert isinstance(result, str)
    return result


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("git-config", "is a symbolic link in the tree"),
        ("gitlink/config", "goes through gitlink, a symbolic link"),
        ("gitlink/hooks/pre-commit", "goes through gitlink, a symbolic link"),
        (".Git/config", r"inside \.git"),
        ("sub/.GIT/hooks/post-commit", r"inside \.git"),
        (".gi\u200ct/config", r"inside \.git"),
        ("reports", r"is a folder in your view \(reports/ holds files\)"),
        ("reports/formats", r"is a folder in your view \(reports/formats/ holds files\)"),
        ("README.md/notes.md", "would put a file under README.md, which is a file"),
        ("docs/" + "n" * 250 + ".md", "a name of 253 bytes"),
        ("docs/\ud800.md", "lone surrogate"),
        ("debug.log", r"ignored by git \(rule '\*\.log' of \.gitignore line 1\)"),
        ("build/report.txt", r"ignored by git \(rule 'build/' of \.gitignore line 2\)"),
        ("sub/secret/token.txt", r"rule 'secret/' of sub/\.gitignore line 1"),
        ("readme.md", "differs from README.md only in case"),
        ("Reports/new.py", "Reports differs from reports only in case"),
    ],
)
def test_write_file_refuses_at_once_with_what_to_do(
    base: tuple[Path, str], path: str, reason: str
) -> None:
    v = view(base)
    with pytest.raises(ToolError, match=reason):
        write(v, path)
    assert v.changes == {}


def test_what_the_tree_allows_is_recorded(base: tuple[Path, str]) -> None:
    v = view(base)
    assert write(v, "README.md").startswith("recorded README.md")  # an edit of a file
    write(v, "reports/csv.py")  # a new file in a folder
    write(v, "sub/keep.log")  # re-included by a negation in sub/.gitignore
    write(v, "docs/café-notes.md")  # non-ASCII, existing
    write(v, ".github/workflows/ci.yml")  # allowed unless the run protects it
    assert set(v.changes) == {
        "README.md",
        "reports/csv.py",
        "sub/keep.log",
        "docs/café-notes.md",
        ".github/workflows/ci.yml",
    }


def test_a_file_and_a_folder_of_one_name_in_ones_own_writes(base: tuple[Path, str]) -> None:
    v = view(base)
    write(v, "lib")
    with pytest.raises(ToolError, match="would put a file under lib, which is a file"):
        write(v, "lib/mod.py")
    w = view(base)
    write(w, "pkg/mod.py")
    with pytest.raises(ToolError, match=r"pkg is a folder in your view \(pkg/ holds files\)"):
        write(w, "pkg")
    with pytest.raises(ToolError, match=r"differs from pkg/mod\.py only in case"):
        write(w, "PKG/MOD.py")


def test_upstream_files_and_ignore_rules_count_as_the_tree_does(base: tuple[Path, str]) -> None:
    lead = upstream("LEAD", {"app/main.py": "x", ".gitignore": "*.tmp\n"})
    v = view(base, lead)
    with pytest.raises(ToolError, match=r"would put a file under app/main\.py"):
        write(v, "app/main.py/x")
    with pytest.raises(ToolError, match=r"rule '\*\.tmp' of \.gitignore"):
        write(v, "cache.tmp")
    write(v, "debug.log")  # the lead's .gitignore replaced the base one: *.log is allowed now
    write(v, "app/main.py")  # an edit of what it read


def test_an_agent_that_unignores_first_may_write(base: tuple[Path, str]) -> None:
    v = view(base)
    with pytest.raises(ToolError, match="ignored by git"):
        write(v, "build/keep.txt")
    write(v, ".gitignore", "*.log\n__pycache__/\n")
    write(v, "build/keep.txt")


def test_a_protected_folder_is_refused_in_any_spelling(base: tuple[Path, str]) -> None:
    v = view(base, protected=True)
    for path in (".github/workflows/ci.yml", ".GitHub/actions/x/action.yml"):
        with pytest.raises(ToolError, match=f"under .github/, which {GITHUB_WHY}"):
            write(v, path)
    write(v, "docs/github.md")
    write(v, ".githubignore")  # a file of that name on top is not the folder
