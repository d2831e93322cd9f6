"""A version's live quality over time as SVG: one figure over the monitor's window by
positives, its 95 % interval as a band, and the version's holdout figure as a line.

Server-side SVG like the timeline (no script, no external asset; every text escaped).
The points are the monitor's history (``inferloop/ops/monitor_history.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from xml.sax.saxutils import escape

from inferloop.ops.monitor_history import HistoryPoint

WIDTH, HEIGHT, PAD = 900, 260, 50
WINDOW = "positives"
# The figures drawn, and the holdout metric each is compared with (by domain for the target).
FIGURES = ("f1", "target_value", "auprc", "precision", "recall")
_HOLDOUT = {"f1": "f1", "auprc": "auprc", "precision": "precision", "recall": "recall"}
_TARGET_HOLDOUT = {"emails": "fpr", "transactions": "recall"}


def holdout_name(domain: str, figure: str) -> str | None:
    """The holdout metric a live ``figure`` is drawn against (emails' ham flagged is the
    holdout's false-positive rate, transactions' fraud recall its recall)."""
    if figure == "target_value":
        return _TARGET_HOLDOUT.get(domain)
    return _HOLDOUT.get(figure)


def svg(title: str, points: Sequence[HistoryPoint], figure: str, holdout: float | None) -> str:
    """The plot of ``figure`` over ``points`` (oldest first) against ``holdout``."""
    rows: list[tuple[float, float, float | None, float | None]] = []
    for p in points:
        value, low, high = p.figure(WINDOW, figure)
        if value is not None and math.isfinite(value):
            rows.append((p.at_s, value, low, high))
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">'
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>'
        f'<text x="{PAD}" y="20">{escape(title)}</text>'
    )
    if not rows:
        return head + f'<text x="{PAD}" y="{HEIGHT // 2}">no live figure yet</text></svg>'
    t0, t1 = rows[0][0], rows[-1][0]

    def x(at_s: float) -> float:
        return PAD + (at_s - t0) / max(t1 - t0, 1e-9) * (WIDTH - 2 * PAD)

    top = _top([v for r in rows for v in r[1:] if v is not None], holdout)

    def y(value: float) -> float:  # figures are shares, drawn from 0 to ``top``
        return HEIGHT - PAD - min(max(value, 0.0), top) / top * (HEIGHT - 2 * PAD)

    parts = [head, _axes(y, top)]
    band = [(t, lo, hi) for t, _, lo, hi in rows if lo is not None and hi is not None]
    if len(band) > 1:
        upper = [f"{x(t):.1f},{y(hi):.1f}" for t, _, hi in band]
        lower = [f"{x(t):.1f},{y(lo):.1f}" for t, lo, _ in reversed(band)]
        parts.append(
            f'<polygon class="interval" fill="#c6dbef" points="{" ".join(upper + lower)}"/>'
        )
    line = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v, _, _ in rows)
    parts.append(
        f'<polyline class="live" fill="none" stroke="#1d4e89" stroke-width="2" points="{line}"/>'
    )
    if holdout is not None and math.isfinite(holdout):
        parts.append(
            f'<line class="holdout" x1="{PAD}" x2="{WIDTH - PAD}" y1="{y(holdout):.1f}" '
            f'y2="{y(holdout):.1f}" stroke="#a4161a" stroke-dasharray="6 4"/>'
            f'<text x="{WIDTH - PAD}" y="{y(holdout) - 4:.1f}" text-anchor="end" fill="#a4161a">'
            f"holdout {holdout:.3f}</text>"
        )
    parts.append(
        f'<text x="{PAD}" y="{HEIGHT - 15}">{escape(_clock(t0))}</text>'
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - 15}" text-anchor="end">{escape(_clock(t1))}</text>'
        f'<text x="{WIDTH // 2}" y="{HEIGHT - 15}" text-anchor="middle">{len(rows)} evaluations, '
        f"last {rows[-1][1]:.3f}</text></svg>"
    )
    return "".join(parts)


def _clock(at_s: float) -> str:
    return datetime.fromtimestamp(at_s, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _top(values: list[float], holdout: float | None) -> float:
    """The y axis' top: 1, or a closer bound for a small figure (ham flagged: 0.01)."""
    finite = [v for v in [*values, holdout] if v is not None and math.isfinite(v)]
    highest = max(finite, default=1.0)
    for top in (0.05, 0.1, 0.25, 0.5):
        if highest <= top * 0.9:
            return top
    return 1.0


def _axes(y: Callable[[float], float], top: float) -> str:
    bottom = HEIGHT - PAD
    ticks = "".join(
        f'<text x="{PAD - 8}" y="{y(v) + 4:.1f}" text-anchor="end">{v:g}</text>'
        for v in (0.0, top / 2, top)
    )
    return (
        f'<line x1="{PAD}" y1="{bottom}" x2="{WIDTH - PAD}" y2="{bottom}" stroke="#999"/>'
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{bottom}" stroke="#999"/>{ticks}'
    )
