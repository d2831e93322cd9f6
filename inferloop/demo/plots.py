"""The demo's pictures: throughput over time, the model-version timeline, and the
precision-recall curve of each version on the labels that came back for it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: the demo may run without a display

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve

from inferloop.demo.outcome import DomainOutcome, Predicted


@dataclass(frozen=True)
class VersionEvent:
    """A moment in a model's life: registered, promoted or rejected."""

    time_s: float  # seconds since the demo started
    version: int
    # "promoted" (any move of the champion alias) | "promoted by hand" | "rolled back"
    # (the version moved from) | "rejected" | "not_comparable"
    what: str


def throughput_plot(outcomes: Sequence[DomainOutcome], path: Path) -> Path:
    """Predictions per second over time, one line per domain."""
    fig, ax = plt.subplots(figsize=(9, 4))
    for outcome in outcomes:
        if outcome.timeline:
            t, rate = zip(*outcome.timeline, strict=True)
            ax.plot(t, rate, label=outcome.domain, linewidth=1.2)
    ax.set_xlabel("seconds since the first prediction")
    ax.set_ylabel("predictions / s")
    ax.set_title("Throughput")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def timeline_plot(
    events: Mapping[str, Sequence[VersionEvent]],
    duration_s: float,
    path: Path,
    streams: Mapping[str, tuple[float, float]] | None = None,
) -> Path:
    """Which version was champion when, per domain, with the candidates the gate rejected
    and (shaded) the time the live stream ran."""
    domains = list(events)
    height = 1.8 + 1.4 * len(domains)
    fig, axes = plt.subplots(len(domains), 1, figsize=(9, height), squeeze=False)
    for ax, domain in zip(axes[:, 0], domains, strict=True):
        promoted = sorted(
            (e for e in events[domain] if e.what == "promoted"), key=lambda e: e.time_s
        )
        for i, event in enumerate(promoted):
            end = promoted[i + 1].time_s if i + 1 < len(promoted) else duration_s
            ax.barh(0, end - event.time_s, left=event.time_s, height=0.5, alpha=0.8)
            ax.text(event.time_s, 0, f" v{event.version}", va="center", fontsize=9)
        if streams and domain in streams:
            start, end = streams[domain]
            ax.axvspan(start, end, color="grey", alpha=0.12, label="live stream")
            ax.legend(loc="lower right", fontsize=8, frameon=False)
        _markers(ax, events[domain])
        ax.set_yticks([])
        ax.set_ylim(-0.75, 1.05)
        ax.set_xlim(0, max(duration_s, 1.0))
        ax.set_ylabel(domain)
        ax.grid(axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel("seconds since the demo started")
    fig.suptitle(
        "Champion over time (bars); rejected (x) and not comparable (o) candidates; "
        "promoted by hand (v), rolled back by the monitor (^)",
        fontsize=9,
    )
    return _save(fig, path)


# How each kind of moment is marked: (marker, colour, height, text).
MARKERS = {
    "rejected": ("x", "crimson", 0.45, "rejected"),
    "not_comparable": ("o", "dimgrey", 0.45, "not comparable"),
    "promoted by hand": ("v", "darkorange", -0.4, "by hand"),
    "rolled back": ("^", "purple", -0.4, "rolled back"),
}


def _markers(ax: Any, events: Sequence[VersionEvent]) -> None:
    marked = sorted((e for e in events if e.what in MARKERS), key=lambda e: e.time_s)
    for i, event in enumerate(marked):
        marker, colour, height, text = MARKERS[event.what]
        ax.plot(event.time_s, height, marker=marker, color=colour, markersize=9)
        # Alternate heights, so close moments do not print over each other.
        offset = (0.1 + 0.2 * (i % 2)) * (1 if height > 0 else -0.5)
        label = f"v{event.version} {text}"
        ax.text(event.time_s, height + offset, label, fontsize=8, color=colour)


def pr_plot(
    domain: str, predictions: Sequence[Predicted], labels: Mapping[str, int], path: Path
) -> Path:
    """Precision-recall curve of each version, on the events whose label came back."""
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for version in sorted({p.version for p in predictions}):
        joined = [p for p in predictions if p.version == version and p.event_id in labels]
        y = np.array([labels[p.event_id] for p in joined], dtype=np.int8)
        if not 0 < int(y.sum()) < len(y):
            continue
        scores = np.array([p.score for p in joined])
        precision, recall, _ = precision_recall_curve(y, scores)
        ax.plot(recall, precision, label=f"v{version} ({len(joined)} labelled)")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0, 1.01)
    ax.set_title(f"{domain}: precision-recall by version")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    return _save(fig, path)


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
