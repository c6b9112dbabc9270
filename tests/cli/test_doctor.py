"""`agentmill doctor`: every check, what it found, how to fix a gap; a key is never printed."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL, PREFECT_RESULTS_LOCAL_STORAGE_PATH, temporary_settings

from blocks.credentials import AnthropicCredentials
from tasks.cli.main import main
from tasks.testing.repos import CHECKOUT

KEY = "sk-ant-api03-doctor-test-0000000000000000000000"
CHECKS = ("python", "git", "prefect api", "anthropic key", "bubblewrap", "result storage")


def verdicts(out: str) -> dict[str, str]:
    """{check: ok|warn|fail} from the report's lines."""
    found = {}
    for line in out.splitlines():
        match = re.match(r"^(ok|warn|fail)\s+(\w[\w ]*?)\s{2,}", line)
        if match:
            found[match.group(2)] = match.group(1)
    return found


def test_a_ready_machine_passes_and_the_key_is_named_not_printed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    code = main(["doctor"])
    out = capsys.readouterr().out
    found = verdicts(out)
    assert code == 0, out
    assert set(found) == set(CHECKS) and "fail" not in found.values()
    assert "from ANTHROPIC_API_KEY" in out and KEY not in out
    assert re.search(r"prefect api\s+http://127\.0\.0\.1:\d+/api, server 3\.\d+", out)


def test_a_saved_block_is_found_on_the_server(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    name = f"doctor-{uuid.uuid4().hex[:8]}"
    AnthropicCredentials(api_key=KEY).save(name)
    assert main(["doctor", "--credentials", name]) == 0
    out = capsys.readouterr().out
    assert f"from block '{name}'" in out and KEY not in out
    assert main(["doctor", "--credentials", "not-saved"]) == 1
    assert "block named 'not-saved': create it" in capsys.readouterr().out


def test_each_gap_says_how_to_fix_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    (tmp_path / "a-file").write_text("not a directory")
    with temporary_settings(
        updates={
            PREFECT_API_URL: "http://127.0.0.1:9/api",  # nothing listens there
            PREFECT_RESULTS_LOCAL_STORAGE_PATH: tmp_path / "a-file" / "storage",
        }
    ):
        code = main(["doctor", "--github"])
    out = capsys.readouterr().out
    found = verdicts(out)
    assert code == 1
    assert found["prefect api"] == "fail" and "fix: cannot reach the Prefect API" in out
    assert found["anthropic key"] == "warn" and "runs use the offline model" in out
    assert found["github token"] == "fail" and "fix: export GITHUB_TOKEN" in out
    assert found["result storage"] == "fail" and "PREFECT_RESULTS_LOCAL_STORAGE_PATH" in out


def test_doctor_and_help_do_not_import_the_flows() -> None:
    """The flows (and Prefect's server) take seconds to import: only build and issues need them."""
    probe = (
        "import sys, contextlib, io\n"
        "from tasks.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['--help'])\n"
        "from tasks.cli.main import parser\n"
        "parser(['doctor'])\n"
        "print(sorted(m for m in sys.modules if m.startswith('flows')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=CHECKOUT
    ).stdout
    assert out.strip() == "[]"
