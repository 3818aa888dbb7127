"""The dashboard's charts as inline SVG, drawn on the server (dashboard: data -> markup): no
chart library, no JavaScript, nothing fetched. Colours come from CSS classes (static/
style.css: `.s-COMPLETED`...), so the charts follow the page's palette.

- `runs_by_hour`: stacked bars, one per hour, a segment per state;
- `timeline`: one mark per run (or task run) on a time axis, a bar from start to end when
  both are known, a dot at its scheduled time otherwise.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from markupsafe import Markup

STATE_ORDER = (
    "COMPLETED",
    "RUNNING",
    "PENDING",
    "CANCELLING",
    "SCHEDULED",
    "LATE",
    "FAILED",
    "CRASHED",
    "CANCELLED",
)


def runs_by_hour(hours: Sequence[dict[str, Any]], width: int = 720, height: int = 160) -> Markup:
    """`hours`: [{"hour": ISO, "states": {STATE: count}}] (service.runs_by_hour)."""
    top = max([sum(h["states"].values()) for h in hours] + [1])
    slot = width / max(len(hours), 1)
    bar = max(slot - 4, 2)
    plot = height - 20
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="runs of the last {len(hours)} hours by state">'
    ]
    for index, hour in enumerate(hours):
        x = index * slot + 2
        y = float(plot)
        for state in STATE_ORDER:
            count = hour["states"].get(state, 0)
            if not count:
                continue
            tall = plot * count / top
            y -= tall
            parts.append(
                f'<rect class="s-{state}" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" '
                f'height="{tall:.1f}"><title>{escape(hour["hour"][11:16])} UTC: '
                f"{count} {state}</title></rect>"
            )
        if index % 3 == 0:
            parts.append(
                f'<text x="{x:.1f}" y="{height - 5}" class="axis">'
                f"{escape(hour['hour'][11:13])}h</text>"
            )
    parts.append(f'<text x="{width - 4}" y="12" class="axis" text-anchor="end">max {top}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


@dataclass(frozen=True)
class Mark:
    label: str
    state: str
    start: float
    end: float | None
    link: str | None = None


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def run_marks(runs: Sequence[dict[str, Any]]) -> list[Mark]:
    marks = []
    for run in runs:
        start = _epoch(run.get("start_time")) or run["scheduled_time"]
        marks.append(
            Mark(
                run["name"],
                run["state"],
                start,
                _epoch(run.get("end_time")),
                f"/flow-runs/{run['id']}",
            )
        )
    return marks


def task_marks(tasks: Sequence[dict[str, Any]]) -> list[Mark]:
    marks = []
    for task in tasks:
        start = _epoch(task.get("start_time"))
        if start is None:
            continue
        marks.append(
            Mark(task["name"], task.get("state_type") or "PENDING", start, _epoch(task["end_time"]))
        )
    return marks


def timeline(marks: Sequence[Mark], *, rows: bool, width: int = 720) -> Markup:
    """With `rows`, one row per mark (task runs); else one line of dots (a deployment's runs)."""
    if not marks:
        return Markup('<p class="muted">Nothing to show yet.</p>')
    first = min(m.start for m in marks)
    last = max(max(m.start, m.end or m.start) for m in marks)
    span = max(last - first, 1.0)
    row = 18
    height = (len(marks) * row + 24) if rows else 60
    inner = width - 20

    def x_of(moment: float) -> float:
        return 10 + inner * (moment - first) / span

    parts = [f'<svg class="chart timeline" viewBox="0 0 {width} {height}" role="img">']
    for index, mark in enumerate(marks):
        y = index * row + 4 if rows else 20
        title = f"<title>{escape(mark.label)}: {escape(mark.state)}</title>"
        if mark.end is not None:
            x1, x2 = x_of(mark.start), x_of(mark.end)
            shape = (
                f'<rect class="s-{escape(mark.state)}" x="{x1:.1f}" y="{y}" '
                f'width="{max(x2 - x1, 3):.1f}" height="{row - 6}">{title}</rect>'
            )
        else:
            shape = (
                f'<circle class="s-{escape(mark.state)}" cx="{x_of(mark.start):.1f}" '
                f'cy="{y + 6}" r="5">{title}</circle>'
            )
        if mark.link:
            shape = f'<a href="{escape(mark.link)}">{shape}</a>'
        parts.append(shape)
        if rows:
            parts.append(
                f'<text x="{min(x_of(mark.start) + 4, width - 150):.1f}" y="{y + 10}" '
                f'class="label">{escape(mark.label)}</text>'
            )
    stamp = datetime.datetime.fromtimestamp
    parts.append(
        f'<text x="10" y="{height - 4}" class="axis">'
        f"{stamp(first, datetime.UTC):%Y-%m-%d %H:%M:%S}</text>"
        f'<text x="{width - 10}" y="{height - 4}" class="axis" text-anchor="end">'
        f"{stamp(last, datetime.UTC):%Y-%m-%d %H:%M:%S} UTC</text></svg>"
    )
    return Markup("".join(parts))
