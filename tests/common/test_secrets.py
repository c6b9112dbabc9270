"""The one secrets module: key shapes, the run's own secrets, and redaction."""

from __future__ import annotations

from tasks.common.secrets import SecretFinding, redact, scan_text, scanning_for

ANTHROPIC = "sk-ant-api03-" + "A" * 40
GITHUB = "ghp_" + "b" * 36


def test_key_shapes_are_found_by_kind_and_line_never_quoted() -> None:
    text = f"ok\nkey = '{ANTHROPIC}'\ntoken: {GITHUB}\n"
    findings = scan_text("cfg.py", text)
    assert [(f.line, f.kind) for f in findings] == [(2, "Anthropic API key"), (3, "GitHub token")]
    assert all(ANTHROPIC not in str(f) and GITHUB not in str(f) for f in findings)
    assert scan_text("a.py", 'password = "hunter2hunter2hunter2"') == []
    weak = scan_text("a.py", 'password = "hunter2hunter2hunter2"', warnings=True)
    assert weak == [SecretFinding("a.py", 1, "hard-coded credential", "warning")]


def test_the_runs_own_secrets_are_found_and_masked_whatever_their_shape() -> None:
    own = "plain-looking-but-secret-value"
    assert scan_text("x", f"leak {own}") == []
    with scanning_for([own, None]):
        assert [f.kind for f in scan_text("x", f"leak {own}")] == ["this run's own credential"]
        assert redact(f"{own} and {ANTHROPIC}") == "[redacted] and [redacted]"
    assert redact(f"{own}", known=[own]) == "[redacted]"


def test_the_runs_secrets_are_found_encoded_too() -> None:
    import base64
    from urllib.parse import quote

    own = "tok/en+with=odd&chars-0123456789"
    b64 = base64.b64encode(own.encode()).decode()
    basic = base64.b64encode(f"x-access-token:{own}".encode()).decode()
    with scanning_for([own]):
        for form in (b64, b64.rstrip("="), quote(own, safe=""), basic):
            assert scan_text("out.txt", f"printed: {form}"), form
            assert form not in redact(f"printed: {form}")
