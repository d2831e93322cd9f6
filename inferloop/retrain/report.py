"""The report of a run: metrics as JSON, plots as PNG, kept with the version.

Plots are drawn with matplotlib's object API on an Agg canvas (no pyplot, no global
figure state), so the service can draw them from any thread.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve

from inferloop.settings import Settings

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
PR_FILE = "pr_curves.png"
CONFUSION_FILE = "confusion_matrix.png"
SCORES_FILE = "score_distributions.png"
REPORT_FILES = (METRICS_FILE, PR_FILE, CONFUSION_FILE, SCORES_FILE)


def report_folder(settings: Settings, domain: str, version: int) -> Path:
    """Where a version's report is written: under ``retrain.reports_dir`` (by default the
    state directory's ``reports/``), apart for each Redis key prefix."""
    root = settings.retrain.reports_dir or settings.services.state_dir / "reports"
    return root / settings.redis.key_prefix / domain / f"v{version}"


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def pr_curves(
    y: np.ndarray[Any, Any], curves: dict[str, tuple[np.ndarray[Any, Any], float]], title: str
) -> bytes:
    """Precision-recall curves of each model, its operating point marked."""
    fig = Figure(figsize=(6, 5))
    ax = fig.add_subplot()
    for label, (scores, threshold) in curves.items():
        precision, recall, _ = precision_recall_curve(y, scores)
        (line,) = ax.plot(recall, precision, label=label)
        flagged = scores >= threshold
        tp = int(np.count_nonzero(flagged & (y == 1)))
        point_p = tp / max(int(flagged.sum()), 1)
        point_r = tp / max(int(np.count_nonzero(y)), 1)
        ax.plot([point_r], [point_p], "o", color=line.get_color())
    ax.set(xlabel="recall", ylabel="precision", title=title, xlim=(0, 1.01), ylim=(0, 1.01))
    ax.legend(loc="lower left")
    ax.grid(alpha=0.3)
    return _png(fig)


def confusion_matrix(
    y: np.ndarray[Any, Any],
    scores: np.ndarray[Any, Any],
    threshold: float,
    label_names: tuple[str, str],
    title: str,
) -> bytes:
    """The candidate's confusion matrix on the holdout at its threshold."""
    flagged = scores >= threshold
    truth = y == 1
    cells = np.array(
        [
            [np.count_nonzero(~truth & ~flagged), np.count_nonzero(~truth & flagged)],
            [np.count_nonzero(truth & ~flagged), np.count_nonzero(truth & flagged)],
        ]
    )
    fig = Figure(figsize=(5, 4.5))
    ax = fig.add_subplot()
    ax.imshow(cells, cmap="Blues")
    for (row, col), count in np.ndenumerate(cells):
        ax.text(
            col,
            row,
            str(count),
            ha="center",
            va="center",
            color="white" if count > cells.max() / 2 else "black",
        )
    ax.set_xticks([0, 1], [f"predicted {n}" for n in label_names])
    ax.set_yticks([0, 1], [f"true {n}" for n in label_names])
    ax.set_title(f"{title} (threshold {threshold:.4f})")
    return _png(fig)


def score_distributions(
    y: np.ndarray[Any, Any],
    curves: dict[str, tuple[np.ndarray[Any, Any], float]],
    label_names: tuple[str, str],
    title: str,
) -> bytes:
    """Histograms of each model's scores by true class, thresholds marked."""
    fig = Figure(figsize=(6 * len(curves), 4))
    bins = [i / 50 for i in range(51)]
    for i, (label, (scores, threshold)) in enumerate(curves.items()):
        ax = fig.add_subplot(1, len(curves), i + 1)
        for cls, name in enumerate(label_names):
            ax.hist(scores[y == cls], bins=bins, alpha=0.6, label=name, log=True)
        ax.axvline(threshold, color="black", linestyle="--", label="threshold")
        ax.set(xlabel="score", ylabel="examples (log)", title=f"{title}: {label}")
        ax.legend()
    return _png(fig)


def build_report(
    *,
    summary: dict[str, Any],
    y: np.ndarray[Any, Any],
    candidate: tuple[np.ndarray[Any, Any], float],
    champion: tuple[np.ndarray[Any, Any], float] | None,
    label_names: tuple[str, str],
    title: str,
) -> dict[str, bytes]:
    """The report files: ``metrics.json`` and three PNG plots."""
    curves = {"candidate": candidate}
    if champion is not None:
        curves["champion"] = champion
    files = {METRICS_FILE: json.dumps(summary, indent=2, sort_keys=True, default=str).encode()}
    if len(y) and 0 < int(np.count_nonzero(y)) < len(y):
        files[PR_FILE] = pr_curves(y, curves, title)
    files[CONFUSION_FILE] = confusion_matrix(y, candidate[0], candidate[1], label_names, title)
    files[SCORES_FILE] = score_distributions(y, curves, label_names, title)
    return files


def write_report(directory: Path, files: dict[str, bytes]) -> Path:
    """Write the report files into ``directory`` (created); return it."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (directory / name).write_bytes(content)
    return directory
