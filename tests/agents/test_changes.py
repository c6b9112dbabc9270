"""merge_changes: where two agents' writes land together, a clash is an error naming both."""

from __future__ import annotations

import pytest

from tasks.agents.changes import WriteConflict, merge_changes, refuse_protected
from tasks.agents.output import AgentOutput
from tasks.common.workspace import PathRejected


def out(role: str, files: dict[str, str]) -> AgentOutput:
    return AgentOutput(role=role, summary="s", files=files, model="m", provider="offline")


def test_two_agents_that_did_not_read_each_other_conflict_on_one_path() -> None:
    a, b = out("WEB_DEV", {"app.py": "a", "a.md": "a"}), out("API_DEV", {"app.py": "b"})
    with pytest.raises(WriteConflict, match=r"agents WEB_DEV and API_DEV both wrote app\.py"):
        merge_changes([a, b], ancestors={"WEB_DEV": set(), "API_DEV": set()})


def test_a_dependent_replaces_what_it_read_and_an_override_replaces_anything() -> None:
    lead, dev = out("LEAD", {"app.py": "lead", "x.md": "x"}), out("DEV", {"app.py": "dev"})
    merged = merge_changes([lead, dev], ancestors={"DEV": {"LEAD"}})
    assert merged == {"LEAD": {"x.md": "x"}, "DEV": {"app.py": "dev"}}
    fix = out("DEV_FIX_1", {"x.md": "fixed"})
    merged = merge_changes([lead, dev, fix], ancestors={"DEV": {"LEAD"}}, overrides={"DEV_FIX_1"})
    assert merged == {"DEV": {"app.py": "dev"}, "DEV_FIX_1": {"x.md": "fixed"}}
    assert merge_changes([lead, lead]) == {"LEAD": {"app.py": "lead", "x.md": "x"}}


@pytest.mark.parametrize(
    ("first", "second", "message"),
    [
        ("lib", "lib/mod.py", "agent A wrote lib as a file and agent B wrote lib/mod.py inside it"),
        ("lib/mod.py", "LIB", "agent B wrote LIB as a file and agent A wrote lib/mod.py"),
        ("README.md", "readme.md", "differ only in case or Unicode form"),
        ("caf\u00e9.md", "cafe\u0301.md", "differ only in case or Unicode form"),
    ],
)
def test_paths_that_cannot_both_be_files_conflict(first: str, second: str, message: str) -> None:
    with pytest.raises(WriteConflict, match=message):
        merge_changes([out("A", {first: "1"}), out("B", {second: "2"})])


def test_a_bad_path_in_a_cached_output_is_refused_naming_its_agent() -> None:
    with pytest.raises(PathRejected, match=r"agent OLD wrote a rejected path: '.Git/config'"):
        merge_changes([out("OLD", {".Git/config": "x"})])


def test_protected_folders_hold_at_the_landing_too() -> None:
    why = "runs with the repository's secrets"
    with pytest.raises(
        PathRejected, match=r"agent A wrote .GITHUB/workflows/x.yml, under .github/"
    ):
        refuse_protected({"A": {"ok.py": "", ".GITHUB/workflows/x.yml": ""}}, {".github": why})
    refuse_protected({"A": {".github/x.yml": ""}}, {})
