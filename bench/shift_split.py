"""The shift case offline: what a retrain run fits, and how well, at points of the stream.

The labels a run of ``bench.shift`` reads are rebuilt here without Kafka: the SMS
collection (its replay times, older), then the first ``k`` mails of SpamAssassin's older
half in stream order. At each ``k`` the retrain's own code (``recipe.train_and_score``
and ``job.choose_threshold``) fits a candidate with a training window under two split
rules, and the candidate is scored on SpamAssassin's newer half (3,023 mails, 500 spam):

- ``log``: the holdout is the newest 20 % of the whole log, the window the newest N
  training examples before it (the rule of ca89b35);
- ``window``: the holdout is 20 % of the window plus holdout (``dataset.holdout_size``).

    .venv/bin/python -m bench.shift_split [--windows 1500] [--points 1500,2250,3023]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

from bench.shift import DOMAIN, offline_figures
from bench.summary import source_facts, write_summary
from inferloop.domains import get_domain
from inferloop.domains.datasets import Dataset, load_dataset
from inferloop.retrain import recipe as recipe_module
from inferloop.retrain.columns import Columns, encode_ids
from inferloop.retrain.dataset import time_split
from inferloop.retrain.job import choose_threshold
from inferloop.retrain.recipe import Recipe, train_and_score
from inferloop.retrain.snapshot import Snapshot
from inferloop.settings import RetrainSettings

log = logging.getLogger("bench.shift_split")


def labelled(sms: Dataset, older: Dataset, k: int) -> Columns:
    """The labels a run reads after ``k`` mails of the older half: SMS, then those mails."""
    spec = get_domain(DOMAIN)
    events = list(sms.events) + list(older.events[:k])
    y = np.concatenate([sms.y, older.y[:k]]).astype(np.int8)
    n = len(events)
    return Columns(
        partition=np.zeros(n, dtype=np.int32),
        offset=np.arange(n, dtype=np.int64),
        ids=encode_ids([f"e{i:06d}" for i in range(n)]),
        event_time_s=np.arange(n, dtype=np.float64),
        labelled_at_s=np.arange(n, dtype=np.float64),
        y=y,
        rows=spec.to_rows(events),
    )


def log_rule(examples: Columns, **kwargs: Any) -> Any:
    """ca89b35's split: the holdout from the whole log, then the window's tail."""
    window = kwargs.pop("window_labels")
    split = time_split(examples, **kwargs)
    return dataclasses.replace(split, train=split.train[-window:])


def one(columns: Columns, window: int, rule: str, newer: Dataset, sms_count: int) -> dict[str, Any]:
    """Fit under ``rule`` and score on the newer half (``sms_count``: the old source's
    examples, first in ``columns``)."""
    spec = get_domain(DOMAIN)
    retrain = RetrainSettings(emails_train_window_labels=window, fit_threads=1)
    recipe = Recipe.from_settings(spec, retrain)
    snapshot = Snapshot(topic="labels", ranges=(), taken_at_s=1e12, columns=columns)
    if rule == "log":
        with mock.patch.object(recipe_module, "time_split", log_rule):
            trained = train_and_score(spec, snapshot, recipe)
    else:
        trained = train_and_score(spec, snapshot, recipe)
    choice = choose_threshold(spec, trained)
    split = trained.split
    train_sa = int(np.count_nonzero(split.train >= sms_count))
    model = trained.fitted.pipeline
    scores = model.predict_proba(spec.to_rows(list(newer.events)))[:, 1]
    return {
        "holdout": len(split.holdout),
        "train": len(split.train),
        "train_new_source": train_sa,
        "threshold_source": choice.source,
        **offline_figures(np.asarray(newer.y), scores, choice.threshold),
    }


def run(windows: Sequence[int], points: Sequence[int], data_dir: Path) -> dict[str, Any]:
    """Every (point, window, rule) row."""
    sms = load_dataset("sms", data_dir)
    data = load_dataset("spamassassin", data_dir)
    n = len(data)
    older, newer = data.subset(np.arange(0, n // 2)), data.subset(np.arange(n // 2, n))
    rows = []
    for k in points:
        columns = labelled(sms, older, k)
        for window in windows:
            for rule in ("log", "window"):
                started = time.perf_counter()
                row = {"new_labels": k, "window": window, "rule": rule,
                       **one(columns, window, rule, newer, len(sms))}  # fmt: skip
                row["seconds"] = round(time.perf_counter() - started, 1)
                log.info("%s", row)
                rows.append(row)
    return {"rows": rows}


def markdown(results: dict[str, Any]) -> str:
    """The table."""
    rows = results["sections"]["split"]["rows"]
    head = ["new_labels", "window", "rule", "holdout", "train", "train_new_source",
            "threshold_source", "threshold", "f1", "ham_flagged", "recall", "auprc",
            "f1_at_1pct"]  # fmt: skip
    lines = [
        "# The shift case offline: the split rule under a training window",
        "",
        f"Command: `{results['command']}` (commit {results['source'].get('commit')}, dirty "
        f"tree: {results['source'].get('dirty')}), {results['machine']['time']}, load "
        f"average {results['load_start']} at the start and {results['load_end']} at the end.",
        "",
        "Labels: SMS (5,572) then the first `new_labels` mails of SpamAssassin's older half "
        "in stream order; scored on the newer half (3,023 mails, 500 spam). `log`: holdout "
        "= newest 20 % of the whole log, window before it (ca89b35); `window`: holdout = "
        "20 % of the window plus holdout. F1, ham flagged and recall at the candidate's own "
        "threshold (as the job chose it); F1 at <= 1 % ham flagged is descriptive.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for row in rows:
        lines.append("| " + " | ".join(str(row[h]) for h in head) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Run and write the summary."""
    parser = argparse.ArgumentParser(prog="python -m bench.shift_split")
    parser.add_argument("--windows", default="1500")
    parser.add_argument("--points", default="1500,2250,3023")
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    windows = [int(w) for w in args.windows.split(",")]
    points = [int(p) for p in args.points.split(",")]
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or Path("results") / f"{run_id}-shift-split"
    out.mkdir(parents=True, exist_ok=True)
    load_start = [round(x, 2) for x in os.getloadavg()]
    section = run(windows, points, args.data_dir)
    results = {
        "run": out.name,
        "command": "python -m bench.shift_split " + " ".join(argv or []),
        "source": source_facts(),
        "machine": {"time": datetime.now(UTC).isoformat(), "cores": os.cpu_count()},
        "load_start": load_start,
        "load_end": [round(x, 2) for x in os.getloadavg()],
        "sections": {"split": section},
    }
    write_summary(out, results, markdown)
    print((out / "results.md").read_text())


if __name__ == "__main__":
    main()
