"""Secrets: what key-shaped strings look like, where they hide, and how they are masked.

Agents see text that people wrote, and models repeat what they see; a key
that reaches a commit, a log or a pull request is public the moment it is
pushed. Every place that lets text out uses this module: the commit-time
scan of build_app and the issue pipeline, the review's secret check, the
redaction of tool output and git's error text. Findings name the file, the
line and the kind of secret, never the secret itself.

A run also knows its own credentials (the GitHub token, the API key); a
flow makes them current with `scanning_for`, and the scan and the
redaction look for them as well, whatever their shape, raw, base64- or
URL-encoded.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, quote_plus

from tasks.common.context import Scoped
from tasks.common.errors import AgentmillError

Severity = Literal["error", "warning"]
MASK = "[redacted]"

# A key starts a token: a letter or digit may not run into it, but `_`, `-`,
# `=` or a quote may (`AWS_KEY_AKIA...`, `MY_ghp_...`), which `\b` refuses.
_START = r"(?<![A-Za-z0-9])"

# (kind, severity, pattern). "error": a credential by its shape; "warning": a
# literal assigned to a name that says it is one (might be a placeholder), or a
# test-mode key. Shapes as the providers document them and as gitleaks matches
# them (gitleaks/gitleaks config/gitleaks.toml), lengths as lower bounds.
PATTERNS: tuple[tuple[str, Severity, re.Pattern[str]], ...] = (
    ("Anthropic API key", "error", re.compile(_START + r"sk-ant-[A-Za-z0-9_\-]{20,}")),
    (
        "GitHub token",
        "error",
        re.compile(_START + r"(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,})"),
    ),
    ("GitLab token", "error", re.compile(_START + r"gl(?:pat|ptt|rt|dt|soat)-[A-Za-z0-9_\-]{20,}")),
    (
        "AWS access key id",
        "error",
        re.compile(_START + r"(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}(?![0-9A-Z])"),
    ),
    (
        "AWS secret access key",
        "error",
        re.compile(
            r"(?i:aws)[A-Za-z0-9_.\-]{0,30}(?i:secret)[A-Za-z0-9_.\-]{0,30}['\"]?\s*[:=]\s*"
            r"['\"]?[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"
        ),
    ),
    ("Stripe live key", "error", re.compile(_START + r"(?:sk|rk)_live_[A-Za-z0-9]{20,}")),
    ("Google API key", "error", re.compile(_START + r"AIza[0-9A-Za-z_\-]{35}")),
    ("npm token", "error", re.compile(_START + r"npm_[A-Za-z0-9]{36}")),
    ("Hugging Face token", "error", re.compile(_START + r"hf_[A-Za-z0-9]{34,}")),
    (
        "Slack webhook",
        "error",
        re.compile(r"hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/+\-]{20,}"),
    ),
    (
        "private key",
        "error",
        re.compile(r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |PGP |ENCRYPTED )?PRIVATE KEY"),
    ),
    ("Slack token", "error", re.compile(_START + r"xox[abposr]-[A-Za-z0-9-]{10,}")),
    ("OpenAI API key", "error", re.compile(_START + r"sk-(?:proj-)?[A-Za-z0-9_\-]{32,}")),
    ("Stripe test key", "warning", re.compile(_START + r"(?:sk|rk)_test_[A-Za-z0-9]{20,}")),
    (
        "hard-coded credential",
        "warning",
        re.compile(
            r"(?i)(?<![A-Za-z0-9])(?:password|passwd|secret|api_?key|access_?token|auth_?token)"
            r"(?![A-Za-z0-9])\s*[:=]\s*['\"][^'\"\s]{12,}['\"]"
        ),
    ),
)


@dataclass(frozen=True)
class SecretFinding:
    path: str
    line: int
    kind: str
    severity: Severity = "error"

    def __str__(self) -> str:
        return f"{self.path} line {self.line} holds what looks like a secret ({self.kind})"


class SecretFound(AgentmillError, ValueError):
    """Text about to leave the run (a commit, a pull request) holds a key-shaped string."""


_KNOWN: Scoped[tuple[str, ...]] = Scoped("known_secrets", ())


@contextmanager
def scanning_for(secrets: Iterable[str | None]) -> Iterator[None]:
    """Make the scan and the redaction also look for these exact strings (this run's own)."""
    with _KNOWN.use(tuple(s for s in secrets if s)):
        yield


def known_secrets() -> tuple[str, ...]:
    """This run's own secrets, each in every form it may take in text (see `secret_forms`)."""
    return tuple(form for secret in _KNOWN.get() for form in secret_forms(secret))


def secret_forms(secret: str) -> list[str]:
    """`secret` as it may appear in text: raw, base64 (plain and URL-safe), URL-encoded.

    A test that harvests a token may print it encoded to slip past a scan of
    the raw string; git's Basic header carries `x-access-token:<token>` in
    base64. Forms shorter than 8 characters are left out: they would match
    by chance.
    """
    raw = secret.encode()
    forms = {secret, quote(secret, safe=""), quote_plus(secret)}
    for data in (raw, b"x-access-token:" + raw):
        for encoded in (base64.b64encode(data), base64.urlsafe_b64encode(data)):
            text = encoded.decode()
            forms.update({text, text.rstrip("=")})
    return sorted((f for f in forms if len(f) >= 8), key=len, reverse=True)


def scan_text(path: str, text: str, *, warnings: bool = False) -> list[SecretFinding]:
    """Key-shaped strings (and this run's own secrets) in `text`, one finding per line and kind.

    `warnings` adds the weaker "hard-coded credential" pattern, for reviews; a
    commit is refused on errors only.
    """
    findings: list[SecretFinding] = []
    known = known_secrets()
    for number, line in enumerate(text.splitlines(), start=1):
        for kind, severity, pattern in PATTERNS:
            if (warnings or severity == "error") and pattern.search(line):
                findings.append(SecretFinding(path, number, kind, severity))
                if not warnings:
                    break
        if any(secret in line for secret in known):
            findings.append(SecretFinding(path, number, "this run's own credential"))
    return findings


def redact(text: str, known: Iterable[str] = ()) -> str:
    """`text` with this run's secrets, `known`, and anything shaped like a key masked.

    Each secret is masked in all its forms (`secret_forms`), longest first.
    """
    extra = [form for secret in known if secret for form in secret_forms(secret)]
    for secret in sorted({*extra, *known_secrets()}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    for _kind, severity, pattern in PATTERNS:
        if severity == "error":
            text = pattern.sub(MASK, text)
    return text
