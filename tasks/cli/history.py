"""How long agents took last time, per team and provider: what the live view's estimate uses.

Kept under PREFECT_HOME (`agentmill/durations.json`), beside Prefect's own
state, because it belongs to this machine's runs rather than to a workdir: a
new workdir built by the same team gets an estimate from the first agent on.
Only agents that really ran are recorded (a cache hit takes no time and says
nothing about the next real run); a file that cannot be read is treated as
empty, and a failed write costs only the next estimate.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from prefect.settings import get_current_settings

from tasks.common.workspace import atomic_write_json


def history_path() -> Path:
    return get_current_settings().home / "agentmill" / "durations.json"


def _load(path: Path) -> dict[str, dict[str, float]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        str(key): {str(k): float(v) for k, v in value.items() if isinstance(v, int | float)}
        for key, value in data.items()
        if isinstance(value, dict)
    }


def recorded(key: str, path: Path | None = None) -> dict[str, float]:
    """{name: seconds} last recorded under `key` (e.g. "build:default:anthropic")."""
    return _load(path or history_path()).get(key, {})


def record(key: str, durations: dict[str, float], path: Path | None = None) -> None:
    """Remember these durations under `key`, over the older ones of the same names."""
    if not durations:
        return
    path = path or history_path()
    data = _load(path)
    data[key] = {**data.get(key, {}), **{k: round(v, 3) for k, v in durations.items()}}
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, data)
