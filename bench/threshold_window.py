"""Where a threshold holds: the calibration window against pooled forward folds (issue 33).

Fits each scenario's training side once (forward folds, as the retrain job does) and
chooses two thresholds from the same out-of-fold scores: the old rule (every fold
pooled) and the new one (the newest window holding ``10 / target`` examples of the
class the target counts). Both are judged on the holdout, the newest data, which
neither saw: the realised rate of the target (ham flagged, fraud missed) with its
Clopper-Pearson 95 % interval, and F1 / recall there.

    .venv/bin/python -m bench.threshold_window [--data-dir ../shared/data] [--only NAME]

Scenarios: ``spamassassin`` (newest 20 % held out), ``sms+spamassassin`` (a second
source after a first: all of SMS, then the older 80 % of SpamAssassin, trained on;
the newest 20 % of SpamAssassin held out) and ``creditcard`` (newest 20 % of the
development slice held out, per class as ``inferloop evaluate`` does); ``gate``: v1
trained on SMS alone against a candidate of ``sms+spamassassin``, decided by the gate
before issue 33 and by today's.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from inferloop.domains import get_domain, training
from inferloop.domains.datasets import Dataset, deduplicate, holdout_split, load_dataset
from inferloop.domains.metrics import RealisedRate
from inferloop.domains.spec import DomainSpec
from inferloop.retrain.bootstrap import ModelScores
from inferloop.retrain.gate import GUARDRAILS, Contender, GateConfig, Guardrail, decide


def _split(name: str, data_dir: Path) -> tuple[list[Any], Any, list[Any], Any]:
    """(train events, train y, holdout events, holdout y) of a scenario."""
    if name == "sms+spamassassin":
        first, _ = deduplicate(load_dataset("sms", data_dir))
        events, y, h_events, h_y = _split("spamassassin", data_dir)
        return list(first.events) + events, np.r_[first.y, y], h_events, h_y
    dataset: Dataset = deduplicate(load_dataset(name, data_dir))[0]
    train, holdout = holdout_split(dataset, 0.2)
    t, h = dataset.subset(train), dataset.subset(holdout)
    return list(t.events), np.asarray(t.y), list(h.events), np.asarray(h.y)


def _judge(spec: DomainSpec, y: Any, scores: Any, threshold: float) -> dict[str, Any]:
    rate = RealisedRate.of_counts(*spec.target().errors(y, scores, threshold))
    metrics = spec.metrics(y, scores, threshold)
    return {
        "threshold": threshold,
        "realised": rate.as_dict(),
        "f1": metrics["f1"],
        "recall": metrics["recall"],
        "precision": metrics["precision"],
    }


def measure(name: str, data_dir: Path) -> dict[str, Any]:
    """Both thresholds of one scenario, judged on its holdout."""
    spec = get_domain("transactions" if name == "creditcard" else "emails")
    events, y, h_events, h_y = _split(name, data_dir)
    started = time.perf_counter()
    with threadpool_limits(limits=1):
        fitted = training.fit(spec, spec.to_rows(events), y, seed=42, folds=5)
    fit_s = time.perf_counter() - started
    scores = fitted.pipeline.predict_proba(spec.to_rows(h_events))[:, 1]
    pooled = spec.choose_threshold(fitted.oof_y, fitted.oof_scores)
    window_y, _ = fitted.calibration()
    return {
        "scenario": name,
        "target": spec.target().describe(),
        "train": len(y),
        "holdout": len(h_y),
        "holdout_positives": int(np.sum(h_y)),
        "out_of_fold": len(fitted.oof_y),
        "window": {
            "examples": len(window_y),
            "positives": int(np.sum(window_y)),
            "source": fitted.threshold_source,
        },
        "pooled_folds": _judge(spec, h_y, scores, pooled),
        "calibration_window": _judge(spec, h_y, scores, fitted.threshold),
        "auprc": spec.metrics(h_y, scores, fitted.threshold)["auprc"],
        "fit_s": round(fit_s, 1),
    }


def gate_under_shift(data_dir: Path) -> dict[str, Any]:
    """The issue's case: v1 trained on SMS, a candidate on SMS then the older 80 % of
    SpamAssassin, both judged on SpamAssassin's newest 20 %: the threshold and the
    comparison before issue 33 against today's."""
    spec = get_domain("emails")
    sms = deduplicate(load_dataset("sms", data_dir))[0]
    events, y, h_events, h_y = _split("sms+spamassassin", data_dir)
    with threadpool_limits(limits=1):
        v1 = training.fit(spec, spec.to_rows(list(sms.events)), sms.y, seed=42, folds=5)
        cand = training.fit(spec, spec.to_rows(events), y, seed=42, folds=5)
    rows = spec.to_rows(h_events)
    cand_scores = cand.pipeline.predict_proba(rows)[:, 1]
    v1_scores = v1.pipeline.predict_proba(rows)[:, 1]
    pooled = spec.choose_threshold(cand.oof_y, cand.oof_scores)

    def contender(scores: Any, threshold: float) -> Contender:
        return Contender(ModelScores(scores, threshold), spec.metrics(h_y, scores, threshold))

    champion = contender(v1_scores, v1.threshold)
    old_guards = (Guardrail("fpr", False, 0.005), Guardrail("roc_auc", True, 0.01))
    cases = {
        # The threshold rule and the comparison before issue 33 (pooled folds, F1 at
        # each model's own threshold, a ham-flagged guardrail); today's floor rule, so
        # that the comparison is what differs (the old floor step refused it outright).
        "before": (
            contender(cand_scores, pooled),
            GateConfig("f1", spec.floor, 0.0, 30, 1000, 42, old_guards),
        ),
        "now": (
            contender(cand_scores, cand.threshold),
            GateConfig("f1", spec.floor, 0.0, 30, 1000, 42, GUARDRAILS["emails"], spec.target()),
        ),
    }
    keys = ("f1", "fpr", "recall", "auprc")
    out: dict[str, Any] = {"v1": {k: champion.metric(k) for k in keys}}
    for label, (candidate, config) in cases.items():
        result = decide(config, h_y, candidate, champion)
        out[label] = {
            "candidate": {k: candidate.metric(k) for k in keys},
            "decision": result.decision,
            "reason": result.reason,
        }
    return out


def _line(result: dict[str, Any], rule: str) -> str:
    r = result[rule]
    rate = r["realised"]
    return (
        f"  {rule:<18} threshold {r['threshold']:.6f}: {rate['errors']} of {rate['of']} "
        f"= {rate['rate']:.2%} [{rate['lower']:.2%}, {rate['upper']:.2%}], "
        f"F1 {r['f1']:.3f}, recall {r['recall']:.3f}, precision {r['precision']:.3f}"
    )


def main() -> None:
    """Run the scenarios and print one block each (``--json`` for the raw figures)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--only", action="append", default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    names = args.only or ["spamassassin", "sms+spamassassin", "creditcard", "gate"]
    for name in names:
        if name == "gate":
            print(json.dumps(gate_under_shift(args.data_dir), indent=1))
            continue
        result = measure(name, args.data_dir)
        if args.json:
            print(json.dumps(result))
            continue
        w = result["window"]
        print(
            f"{name}: target {result['target']}; train {result['train']}, holdout "
            f"{result['holdout']} ({result['holdout_positives']} positive), AUPRC "
            f"{result['auprc']:.3f}; window {w['examples']} of {result['out_of_fold']} "
            f"out-of-fold ({w['positives']} positive, {w['source']}); fit {result['fit_s']} s"
        )
        print(_line(result, "pooled_folds"))
        print(_line(result, "calibration_window"))


if __name__ == "__main__":
    main()
