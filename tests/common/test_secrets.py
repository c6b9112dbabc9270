"""The one secrets module: key shapes, the run's own secrets, and redaction."""

from __future__ import annotations

from urllib.parse import quote

import pytest

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


def test_keys_glued_to_a_name_are_found() -> None:
    """On main, `\\b` failed after `_`: AWS_KEY_AKIA... and MY_ghp_... passed the scan."""
    for text, kind in [
        ("AWS_KEY_AKIA" + "Q7ZJ3K2L9M4N5P6R", "AWS access key id"),
        ("MY_ghp_" + "a" * 36, "GitHub token"),
        ("export TOKEN=xoxb-" + "1" * 12, "Slack token"),
        ("key_sk-ant-api03-" + "z" * 30, "Anthropic API key"),
    ]:
        assert [f.kind for f in scan_text("f", text)] == [kind], text
    assert scan_text("f", "xAKIA" + "Q" * 16) == []  # inside a longer word: not a key
    assert scan_text("f", "AKIA" + "Q" * 17) == []  # one character too many: not one either


def test_the_common_formats_are_found() -> None:
    """On main these were not patterns at all."""
    cases = {
        "Stripe live key": "STRIPE=sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
        "Google API key": "AIza" + "SyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY",
        "GitLab token": "glpat-" + "xxxxxxxxxxxxxxxxxxxx",
        "npm token": "//registry.npmjs.org/:_authToken=npm_" + "a1B2" * 9,
        "Hugging Face token": "HF_TOKEN=hf_" + "abcdefghijklmnopqrstuvwxyzABCDEFGH",
        "AWS secret access key": 'aws_secret_access_key = "'
        + "wJalrXUtnFEMI/K7MDENG/bPxRfiCY"
        + 'EXAMPLEKEY"',
        "Slack webhook": "https://hooks.slack.com/services/" + "T00000000/B00000000/" + "X" * 24,
    }
    for kind, text in cases.items():
        assert [f.kind for f in scan_text("f", text)] == [kind], text
        assert redact(text) != text
    test_key = "sk_test_" + "4eC39HqLyjWDarjtT1zdp7dc"
    assert scan_text("f", test_key) == []  # a test key blocks nothing, a review warns of it
    assert [f.kind for f in scan_text("f", test_key, warnings=True)] == ["Stripe test key"]


def test_an_outputs_words_are_scanned_as_its_files_are() -> None:
    from tasks.agents.output import AgentOutput, refuse_secrets
    from tasks.common.secrets import SecretFound

    own = "run secret/with+odd=chars-0123456789"
    output = AgentOutput(
        role="DEV",
        summary="done",
        decisions=["kept it simple"],
        files={"docs/x.md": "fine"},
        result={"notes": "use " + "glpat-" + "y" * 20},
        model="m",
        provider="offline",
    )
    with pytest.raises(SecretFound, match=r"agent DEV: its result line \d+ holds .*GitLab token"):
        refuse_secrets([output])
    clean = output.model_copy(update={"result": {}})
    refuse_secrets([clean])
    with scanning_for([own]), pytest.raises(SecretFound, match="the pull request line 2 holds"):
        refuse_secrets([clean], [("the pull request", "title\nbody with " + quote(own, safe=""))])
