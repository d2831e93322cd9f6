"""The timeline plot, drawn live as SVG from the registry's history: the champion's
version over time, a mark at each promotion, rollback and rejection, at each drift
alarm the monitor kept (its time, detector, statistic and threshold in its tooltip), and
at each floor alarm, probation loss and retrain trigger of the monitor (its figure against
its threshold, and the labelled events behind it, in its tooltip).

Server-side SVG (no script, no external asset): an ``<img>`` of it is allowed by the
console's CSP and runs nothing. Every text in it is XML-escaped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from xml.sax.saxutils import escape

from inferloop.ops.monitor_history import DriftAlarm, KeptAction
from inferloop.registry.entities import HistoryEntry

WIDTH, HEIGHT, PAD = 900, 300, 50
_COLOURS = {
    "promote": "#2b7a0b",
    "rollback": "#a4161a",
    "reject": "#6c757d",
    "drift": "#e07b00",
    "floor": "#7b2cbf",
    "probation": "#c9184a",
    "trigger": "#0077b6",
}
# The kept monitor records marked on the plot (its rollbacks and challenger moves are in
# the registry's history, marked as such).
_KEPT_MARKS = {"floor": "floor", "probation-loss": "probation", "retrain-trigger": "trigger"}
Detail = DriftAlarm | KeptAction | None


def _champion_steps(entries: Sequence[HistoryEntry]) -> list[tuple[datetime, int]]:
    """(time, champion version) after each move of ``champion``, oldest first."""
    return [
        (e.time, e.to_target.version)
        for e in entries
        if e.alias == "champion" and e.to_target is not None
    ]


def _marks(entries: Sequence[HistoryEntry]) -> list[tuple[datetime, int, str]]:
    marks = []
    for e in entries:
        kind = "promote" if e.action in ("promote", "promote_challenger") else e.action
        version = e.to_target.version if e.to_target is not None else e.version
        if kind in _COLOURS and version is not None:
            marks.append((e.time, version, kind))
    return marks


def _alarm_marks(alarms: Sequence[DriftAlarm], fallback: int) -> list[tuple[datetime, int, str]]:
    return [(a.at, a.version if a.version is not None else fallback, "drift") for a in alarms]


def _kept_marks(
    kept: Sequence[KeptAction], fallback: int
) -> tuple[list[tuple[datetime, int, str]], list[Detail]]:
    shown = [k for k in kept if k.kind in _KEPT_MARKS]
    marks = [
        (k.at, k.version if k.version is not None else fallback, _KEPT_MARKS[k.kind]) for k in shown
    ]
    details: list[Detail] = list(shown)
    return marks, details


def _title(kind: str, version: int, moment: datetime, alarm: Detail) -> str:
    if alarm is None:
        return f"{kind} v{version} at {moment.isoformat()}"
    if isinstance(alarm, KeptAction):
        return f"{alarm.kind} ({alarm.outcome}) on v{version} at {moment.isoformat()}: " + (
            alarm.summary()
        )
    return (
        f"drift ({alarm.detector}) on v{version} at {moment.isoformat()}: statistic "
        f"{alarm.statistic:.2f} over threshold {alarm.threshold:g}"
    )


def svg(
    domain: str,
    history: Sequence[HistoryEntry],
    alarms: Sequence[DriftAlarm] = (),
    kept: Sequence[KeptAction] = (),
) -> str:
    """The plot of ``history`` (newest first, as the registry gives it), the drift
    ``alarms`` and the monitor's ``kept`` alarms and triggers."""
    entries = sorted(history, key=lambda e: e.time)
    steps, marks = _champion_steps(entries), _marks(entries)
    fallback = steps[-1][1] if steps else 1
    drift = _alarm_marks(alarms, fallback)
    details: list[Detail] = [None] * len(marks)
    details += alarms
    marks += drift
    kept_marks, kept_details = _kept_marks(kept, fallback)
    marks += kept_marks
    details += kept_details
    times = [t for t, _ in steps] + [t for t, _, _ in marks]
    versions = [v for _, v in steps] + [v for _, v, _ in marks]
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">'
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>'
        f'<text x="{PAD}" y="20">{escape(domain)}: champion version over time</text>'
    )
    if not times:
        return head + f'<text x="{PAD}" y="{HEIGHT // 2}">no alias move yet</text></svg>'
    t0, t1 = min(times).timestamp(), max(times).timestamp()
    v0, v1 = min(versions), max(versions)

    def x(moment: datetime) -> float:
        return PAD + (moment.timestamp() - t0) / max(t1 - t0, 1e-9) * (WIDTH - 2 * PAD)

    def y(version: int) -> float:
        return HEIGHT - PAD - (version - v0) / max(v1 - v0, 1) * (HEIGHT - 2 * PAD)

    parts = [head, _axes(v0, v1, y)]
    if steps:
        points = []
        for (moment, version), after in zip(
            steps, [*steps[1:], (max(times), steps[-1][1])], strict=True
        ):
            points += [f"{x(moment):.1f},{y(version):.1f}", f"{x(after[0]):.1f},{y(version):.1f}"]
        parts.append(
            f'<polyline fill="none" stroke="#1d2430" stroke-width="2" points="{" ".join(points)}"/>'
        )
    for (moment, version, kind), alarm in zip(marks, details, strict=True):
        parts.append(
            f'<circle cx="{x(moment):.1f}" cy="{y(version):.1f}" r="5" fill="{_COLOURS[kind]}">'
            f"<title>{escape(_title(kind, version, moment, alarm))}</title></circle>"
        )
    parts.append(_legend())
    parts.append(
        f'<text x="{PAD}" y="{HEIGHT - 15}">{escape(min(times).strftime("%H:%M:%S"))}</text>'
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - 15}" text-anchor="end">'
        f"{escape(max(times).strftime('%H:%M:%S'))}</text></svg>"
    )
    return "".join(parts)


def _axes(v0: int, v1: int, y: Callable[[int], float]) -> str:
    bottom = HEIGHT - PAD
    labels = "".join(
        f'<text x="{PAD - 8}" y="{y(v) + 4:.1f}" text-anchor="end">v{v}</text>'
        for v in range(v0, v1 + 1)
    )
    return (
        f'<line x1="{PAD}" y1="{bottom}" x2="{WIDTH - PAD}" y2="{bottom}" stroke="#999"/>'
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{bottom}" stroke="#999"/>{labels}'
    )


def _legend() -> str:
    items = []
    for i, (kind, colour) in enumerate(_COLOURS.items()):
        left = WIDTH - PAD - 90 * len(_COLOURS) + i * 90
        items.append(
            f'<circle cx="{left}" cy="32" r="5" fill="{colour}"/>'
            f'<text x="{left + 10}" y="36">{kind}</text>'
        )
    return "".join(items)
