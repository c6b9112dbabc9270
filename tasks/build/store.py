"""The `.tasks/` store: the manifest, each agent's output, and the run report.

Only the flow writes here, from its event loop, one boundary at a time, and
every file is replaced atomically, through no link (`write_under`): an
output record carries an agent's words, and a `.tasks` that led into `.git`
would carry them there. `manifest.json` and the report are run
state (ignored by git); `<ROLE>/output.json` and `artifacts.json` are the
agents' work and are committed with their phase.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from tasks.agents.output import AgentOutput
from tasks.common.errors import AgentmillError
from tasks.common.workspace import STORE_DIR, json_bytes, store_dir, write_under

MANIFEST = "manifest.json"


class ManifestError(AgentmillError, ValueError):
    """The workdir's .tasks/manifest.json cannot be read; the message says what to do."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class AgentEntry(BaseModel):
    phase: str
    status: str = "pending"  # pending | running | done | failed | skipped
    cached: bool = False
    model: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    duration_s: float = 0.0
    tokens: dict[str, int] = Field(default_factory=dict)
    cost_usd: float = 0.0
    cache_key: str = ""
    output_path: str | None = None
    error: str | None = None


class PhaseEntry(BaseModel):
    status: str = "pending"  # pending | committed | unchanged | failed
    commit: str | None = None


class Manifest(BaseModel):
    version: int = 1
    session: str
    idea: str
    team: str
    provider: str
    base_commit: str | None
    base_tree: str
    head: str | None = Field(
        default=None,
        description="HEAD when the run last touched the branch: its last phase commit, or the "
        "commit it started on. A rerun refuses a HEAD that moved on from it (see build_app).",
    )
    status: str = "running"
    started_at: str = Field(default_factory=now_iso)
    finished_at: str | None = None
    phases: dict[str, PhaseEntry] = Field(default_factory=dict)
    agents: dict[str, AgentEntry] = Field(default_factory=dict)


class Store:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.root = workdir / STORE_DIR

    def _write(self, name: str, data: bytes) -> None:
        store_dir(self.workdir)  # refuses a .tasks that is a link
        write_under(self.workdir, f"{STORE_DIR}/{name}", data)

    def load_manifest(self) -> Manifest | None:
        path = self.root / MANIFEST
        if not path.exists():
            return None
        try:
            return Manifest.model_validate_json(path.read_text())
        except ValueError as exc:
            raise ManifestError(
                f"{path} is not a valid agentmill manifest ({exc.__class__.__name__}); "
                "move it away, or rerun with fresh set to start from HEAD"
            ) from exc

    def save_manifest(self, manifest: Manifest) -> None:
        self._write(MANIFEST, json_bytes(manifest.model_dump(mode="json")))

    def output_paths(self, role: str) -> tuple[str, str]:
        return f"{STORE_DIR}/{role}/output.json", f"{STORE_DIR}/{role}/artifacts.json"

    def output_files(self, output: AgentOutput) -> dict[str, bytes]:
        """{path: bytes} of the agent's output record and its artifact list, as they land."""
        output_path, artifacts_path = self.output_paths(output.role)
        artifacts = [
            {
                "path": path,
                "bytes": len(content.encode()),
                "sha256": hashlib.sha256(content.encode()).hexdigest(),
            }
            for path, content in sorted(output.files.items())
        ]
        return {
            output_path: json_bytes(self.output_record(output)),
            artifacts_path: json_bytes(artifacts),
        }

    def save_output(self, output: AgentOutput) -> list[str]:
        """Write the agent's output record and its artifact list; returns their paths."""
        files = self.output_files(output)
        for path, data in files.items():
            write_under(self.workdir, path, data)
        return list(files)

    def output_record(self, output: AgentOutput) -> dict[str, Any]:
        """What `.tasks/<ROLE>/output.json` holds: the output without its files' contents."""
        record: dict[str, Any] = output.model_dump(mode="json", exclude={"files"})
        record["files"] = sorted(output.files)
        return record

    def save_report(self, report: BaseModel, markdown: str, timeline_svg: str) -> Path:
        self._write(
            "report.json", (json.dumps(report.model_dump(mode="json"), indent=2) + "\n").encode()
        )
        self._write("report.md", markdown.encode())
        self._write("report.timeline.svg", timeline_svg.encode())
        return self.root / "report.json"
