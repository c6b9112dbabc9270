"""A Gantt picture of a run as SVG: one bar per agent, coloured by phase, critical path outlined.

Plain SVG text keeps the dependency list short and renders in any browser
and in GitHub.
"""

from __future__ import annotations

from html import escape

from tasks.build.report import AgentReport

_COLOURS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948"]
_ROW, _LABEL, _WIDTH = 18, 190, 720


def render_timeline(
    agents: list[AgentReport], phases: list[str], critical: list[str], title: str
) -> str:
    rows = sorted(agents, key=lambda a: (a.started_s, a.role))
    end = max((a.started_s + a.duration_s for a in rows), default=0.0) or 1.0
    scale = _WIDTH / end
    height = 40 + _ROW * len(rows) + 30
    colour = {p: _COLOURS[i % len(_COLOURS)] for i, p in enumerate(phases)}
    on_path = set(critical)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_LABEL + _WIDTH + 20}" '
        f'height="{height}" font-family="sans-serif" font-size="11">',
        f'<text x="4" y="16" font-size="13">{escape(title)}</text>',
    ]
    for i, a in enumerate(rows):
        y = 28 + i * _ROW
        x = _LABEL + a.started_s * scale
        w = max(1.0, a.duration_s * scale)
        stroke = ' stroke="#000" stroke-width="2"' if a.role in on_path else ""
        out.append(
            f'<text x="4" y="{y + 12}">{escape(a.role)}{" (cached)" if a.cached else ""}</text>'
        )
        out.append(
            f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{_ROW - 4}" '
            f'fill="{colour.get(a.phase, "#999")}"{stroke}><title>{escape(a.role)}: '
            f"{a.duration_s:.3f}s</title></rect>"
        )
    y = 40 + _ROW * len(rows)
    x = _LABEL
    for phase in phases:
        out.append(f'<rect x="{x}" y="{y}" width="10" height="10" fill="{colour[phase]}"/>')
        out.append(f'<text x="{x + 14}" y="{y + 9}">{escape(phase)}</text>')
        x += 14 + 8 * len(phase) + 16
    out.append(f'<text x="{x}" y="{y + 9}">outlined: critical path; axis {end:.2f}s</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
