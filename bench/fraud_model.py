"""Fraud model candidates on the credit-card data: forward folds, holdout, bootstrap, rates.

Issue 33, item 5. The data are those of ``inferloop evaluate transactions --dataset
creditcard``: de-duplicated, the newest 20 % held out. Candidates are compared on
**time-ordered folds of the training side** only: the training side is cut into five
contiguous blocks in time (per class, as ``training.time_blocks`` does) and blocks 3
and 4 are each scored by a model fitted on the blocks before them (60 % and 80 % of
the training side). Each boosting candidate is fitted once per fold with its largest
iteration count, and every smaller count is read from its staged scores, so a row
``lr 0.1 / 31 leaves`` names the best count it found on the folds. The holdout is
scored once, for the candidates named with ``--holdout``, against today's model, with a
paired bootstrap of the AUPRC gain (the same resampled rows for both models).

    .venv/bin/python -m bench.fraud_model folds [--only NAME ...] [--jobs 2]
    .venv/bin/python -m bench.fraud_model holdout --candidate NAME [--bootstrap 2000]
    .venv/bin/python -m bench.fraud_model rates --candidate NAME

Arrays are cached in ``--cache`` (loading and de-duplicating the CSV takes about a
minute); every result is a JSON line on stdout, appended to ``--out`` too.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.ensemble import ExtraTreesClassifier, HistGradientBoostingClassifier
from sklearn.metrics import average_precision_score
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from bench.summary import source_facts, tables
from inferloop.domains import get_domain, training
from inferloop.domains.sampling import NegativeSubsample
from inferloop.domains.transactions import compile_pipeline

SECONDS_PER_DAY = 86_400.0
FOLD_BLOCKS = 5
SCORED_BLOCKS = (3, 4)
RAW_COLUMNS = 29


@dataclass(frozen=True)
class Candidate:
    """One model: tree parameters, time of day or not, how negatives are handled."""

    name: str
    trees: dict[str, Any] = field(default_factory=dict)
    time_of_day: bool = False
    max_negatives: int | None = 200_000
    negative_fraction: float = 1.0
    fraud_weight: float = 1.0
    extra_trees: dict[str, Any] | None = None

    def features(self, rows: np.ndarray[Any, Any], times: np.ndarray[Any, Any]) -> Any:
        """The rows this candidate fits on: v1..v28, amount (and seconds into the day)."""
        if not self.time_of_day:
            return rows
        return np.column_stack([rows, np.mod(times, SECONDS_PER_DAY)])

    def boosting(self, seed: int) -> NegativeSubsample:
        """The boosting part, wrapped for the cap on legitimate transactions."""
        params = dict(TODAY) | self.trees
        if self.fraud_weight != 1.0:
            params["class_weight"] = {0: 1.0, 1: self.fraud_weight}
        model = HistGradientBoostingClassifier(random_state=seed, **params)
        return NegativeSubsample(
            model,
            max_negatives=self.max_negatives,
            negative_fraction=self.negative_fraction,
            random_state=seed,
        )


# Today's tree parameters (inferloop.domains.transactions.build_pipeline).
TODAY: dict[str, Any] = {
    "learning_rate": 0.05,
    "max_iter": 500,
    "max_leaf_nodes": 15,
    "min_samples_leaf": 40,
    "l2_regularization": 1.0,
    "early_stopping": False,
}

CANDIDATES: dict[str, Candidate] = {
    c.name: c
    for c in (
        Candidate("today", trees={"max_iter": 800}),
        # Today's trees, 100 more: the most a model may have within 0.8 x today's rate.
        Candidate("today-600", trees={"max_iter": 600}),
        Candidate("today+tod", trees={"max_iter": 800}, time_of_day=True),
        Candidate("a-fifth", trees={"max_iter": 800}, negative_fraction=0.2),
        Candidate("lr0.1-l31", trees={"learning_rate": 0.1, "max_leaf_nodes": 31, "max_iter": 600}),
        Candidate("lr0.1-l7", trees={"learning_rate": 0.1, "max_leaf_nodes": 7, "max_iter": 800}),
        Candidate("l2-10", trees={"l2_regularization": 10.0, "max_iter": 800}),
        Candidate("features-0.5", trees={"max_features": 0.5, "max_iter": 600}),
        Candidate("msl-100", trees={"min_samples_leaf": 100, "max_iter": 600}),
        Candidate("w5", trees={"max_iter": 800}, fraud_weight=5.0),
        Candidate(
            "today+et",
            extra_trees={"n_estimators": 100, "min_samples_leaf": 5, "max_features": "sqrt"},
        ),
    )
}


def load(cache: Path, data_dir: Path) -> dict[str, np.ndarray[Any, Any]]:
    """rows, y, event times (s), train and holdout positions, as ``inferloop evaluate``."""
    if cache.exists():
        with np.load(cache) as z:
            return {k: z[k] for k in z.files}
    from inferloop.domains.datasets import deduplicate, holdout_split, load_dataset  # noqa: PLC0415

    dataset, _ = deduplicate(load_dataset("creditcard", data_dir))
    train, holdout = holdout_split(dataset, 0.2)
    # v1 .. v28 and the amount: the candidates add any column of their own.
    rows = get_domain("transactions").to_rows(dataset.events)[:, :RAW_COLUMNS]
    times = np.array([e.event_time.timestamp() for e in dataset.events])
    y = np.asarray(dataset.y, dtype=np.int8)
    np.savez(cache, rows=rows, y=y, times=times, train=train, holdout=holdout)
    return {"rows": rows, "y": y, "times": times, "train": train, "holdout": holdout}


# What produced a published run (the report's header).
RUN_COMMANDS = (
    "python -m bench.fraud_model folds --jobs 2 --out results/fraud.jsonl [--only NAME ...]",
    "python -m bench.fraud_model holdout --candidate NAME --out results/fraud.jsonl",
    "python -m bench.fraud_model rates --candidate NAME --out results/fraud.jsonl",
)
# How to read the tables (the report's last section).
READING = (
    "- `at 500` is each candidate after today's 500 iterations; `best iterations` the count",
    "  with the best mean over both folds (read from staged scores, up to 800 or 600).",
    "  A model of more trees scores slower in proportion (compiled scorer, see the rates).",
    "- `today` is today's model (`build_pipeline`: lr 0.05, 15 leaves, min 40 a leaf,",
    "  l2 1.0); `today+tod` adds `Time % 86400`; `lr0.1-l31`, `lr0.1-l7`, `l2-10` tune",
    "  its trees; `w5` weighs fraud 5 x; `a-fifth` keeps a fifth of the legitimate",
    "  transactions, reweighted (what the cap of 200,000 keeps of a 1M-row retrain);",
    "  `today+et` averages it with 100 extra trees (min 5 a leaf, sqrt features);",
    "  `features-0.5` draws half the features at each split, `msl-100` 100 a leaf.",
    "- The cap does not bind on this split (181,257 legitimate transactions on the",
    "  training side, under 200,000): with and without it the fitted model is the same.",
)
STEP = 25  # iteration counts read from the staged scores: 25, 50, ...
Arrays = dict[str, np.ndarray[Any, Any]]


def fit_candidate(c: Candidate, x: Any, y: Any, seed: int) -> tuple[Any, Any]:
    """(boosting, extra trees or None), fitted on ``x``, ``y``."""
    boosting = c.boosting(seed).fit(x, y)
    if c.extra_trees is None:
        return boosting, None
    forest = ExtraTreesClassifier(random_state=seed, n_jobs=1, **c.extra_trees)
    return boosting, forest.fit(x, y)


def staged_auprc(c: Candidate, models: tuple[Any, Any], x: Any, y: Any) -> dict[int, float]:
    """AUPRC of ``x`` after every ``STEP`` iterations (with the forest averaged in)."""
    boosting, forest = models
    forest_scores = 0.0 if forest is None else forest.predict_proba(x)[:, 1]
    weight = 0.0 if forest is None else 0.5
    curve: dict[int, float] = {}
    staged = boosting.estimator_.staged_predict_proba(x)
    for n, proba in enumerate(staged, start=1):
        if n % STEP == 0 or n == boosting.estimator_.n_iter_:
            scores = (1 - weight) * proba[:, 1] + weight * forest_scores
            curve[n] = float(average_precision_score(y, scores))
    return curve


def folds(c: Candidate, arrays: Arrays, seed: int) -> dict[str, Any]:
    """The candidate's AUPRC on each forward fold of the training side, per iteration count."""
    train = arrays["train"]
    y = arrays["y"][train]
    x = c.features(arrays["rows"][train], arrays["times"][train])
    blocks = training.time_blocks(y, FOLD_BLOCKS)
    curves, fit_s = [], []
    with threadpool_limits(limits=1):
        for j in SCORED_BLOCKS:
            fit_idx = np.sort(np.concatenate(blocks[:j]))
            started = time.perf_counter()
            models = fit_candidate(c, x[fit_idx], y[fit_idx], seed)
            fit_s.append(round(time.perf_counter() - started, 1))
            curves.append(staged_auprc(c, models, x[blocks[j]], y[blocks[j]]))
    counts = sorted(set(curves[0]) & set(curves[1]))
    mean = {n: float(np.mean([curve[n] for curve in curves])) for n in counts}
    best = max(mean, key=lambda n: mean[n])
    return {
        "stage": "folds",
        "candidate": c.name,
        "best_iterations": best,
        "mean_auprc": round(mean[best], 4),
        "fold_auprc": [round(curve[best], 4) for curve in curves],
        "fold_frauds": [int(y[blocks[j]].sum()) for j in SCORED_BLOCKS],
        "at_500": round(mean.get(500, float("nan")), 4),
        "curve": {n: round(v, 4) for n, v in mean.items()},
        "fit_s": fit_s,
    }


def _folds_job(args: tuple[str, Path, Path, int]) -> dict[str, Any]:
    name, cache, data_dir, seed = args
    return folds(CANDIDATES[name], load(cache, data_dir), seed)


def paired_bootstrap(y: Any, new: Any, old: Any, resamples: int, seed: int) -> dict[str, float]:
    """Percentiles of AUPRC(new) - AUPRC(old) over rows resampled with replacement,
    the same rows for both models in each resample (a resample without fraud is drawn
    again)."""
    rng = np.random.default_rng(seed)
    gains: list[float] = []
    while len(gains) < resamples:
        pick = rng.integers(0, len(y), len(y))
        if not y[pick].any():
            continue
        gains.append(
            average_precision_score(y[pick], new[pick])
            - average_precision_score(y[pick], old[pick])
        )
    p5, p50, p95 = np.percentile(gains, [5, 50, 95])
    return {"p5": float(p5), "median": float(p50), "p95": float(p95), "resamples": resamples}


def fitted_on_train(c: Candidate | None, arrays: Arrays, seed: int, models: Path) -> Any:
    """(boosting pipeline, forest or None, fit seconds) fitted on the training side, kept in
    ``models`` so that ``rates`` scores the very models ``holdout`` judged; ``None``:
    today's pipeline as ``build_pipeline`` makes it."""
    path = models / f"{'today-built' if c is None else c.name}-{seed}.joblib"
    if path.exists():
        return joblib.load(path)
    train = arrays["train"]
    started = time.perf_counter()
    with threadpool_limits(limits=1):
        if c is None:
            pipeline = get_domain("transactions").build_pipeline(seed)
            pipeline.fit(arrays["rows"][train], arrays["y"][train])
            fitted: tuple[Any, Any] = (pipeline, None)
        else:
            x = c.features(arrays["rows"][train], arrays["times"][train])
            boosting, forest = fit_candidate(c, x, arrays["y"][train], seed)
            fitted = (Pipeline([("model", boosting)]), forest)
    result = (*fitted, time.perf_counter() - started)
    models.mkdir(parents=True, exist_ok=True)
    joblib.dump(result, path)
    return result


def holdout_scores(c: Candidate | None, arrays: Arrays, fitted: Any) -> Any:
    """The holdout's scores of a fitted candidate (boosting averaged with its forest)."""
    pipeline, forest, _ = fitted
    holdout = arrays["holdout"]
    x = arrays["rows"][holdout]
    if c is not None:
        x = c.features(x, arrays["times"][holdout])
    scores = pipeline.predict_proba(x)[:, 1]
    if forest is not None:
        scores = 0.5 * scores + 0.5 * forest.predict_proba(x)[:, 1]
    return scores


def holdout(
    c: Candidate, arrays: Arrays, seed: int, resamples: int, models: Path
) -> dict[str, Any]:
    """The candidate and today's model fitted on the training side, judged once on the
    holdout, with the paired bootstrap of the AUPRC gain."""
    y = arrays["y"][arrays["holdout"]]
    today = fitted_on_train(None, arrays, seed, models)
    fitted = fitted_on_train(c, arrays, seed, models)
    old, new = holdout_scores(None, arrays, today), holdout_scores(c, arrays, fitted)
    old_fit_s, new_fit_s = today[2], fitted[2]
    return {
        "stage": "holdout",
        "candidate": c.name,
        "holdout": len(y),
        "frauds": int(y.sum()),
        "auprc": round(float(average_precision_score(y, new)), 4),
        "today_auprc": round(float(average_precision_score(y, old)), 4),
        "gain": {k: round(v, 4) for k, v in paired_bootstrap(y, new, old, resamples, seed).items()},
        "fit_s": round(new_fit_s, 1),
        "today_fit_s": round(old_fit_s, 1),
    }


def model_rate(score: Callable[[Any], Any], rows: Any, batch: int, seconds: float) -> float:
    """Rows a second through ``score`` in batches of ``batch`` rows, for about ``seconds``."""
    batches = [rows[i : i + batch] for i in range(0, len(rows) - batch + 1, batch)]
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for b in batches:
            score(b)
            done += len(b)
    return done / (time.perf_counter() - started)


def rates(c: Candidate, arrays: Arrays, seed: int, seconds: float, models: Path) -> dict[str, Any]:
    """Model-only scoring rates with the compiled scorer, today's model and the candidate,
    interleaved (A, B, A, B) so that the machine's load falls on both alike."""
    today = fitted_on_train(None, arrays, seed, models)[0]
    new = fitted_on_train(c, arrays, seed, models)[0]
    scorers = {"today": compile_pipeline(today), c.name: compile_pipeline(new)}
    rows = {
        "today": arrays["rows"][arrays["holdout"]],
        c.name: c.features(arrays["rows"], arrays["times"])[arrays["holdout"]],
    }
    out: dict[str, Any] = {"stage": "rates", "candidate": c.name}
    with threadpool_limits(limits=1):
        for batch in (100, 1_000):
            measured: dict[str, list[float]] = {name: [] for name in scorers}
            for _ in range(2):
                for name, score in scorers.items():
                    measured[name].append(model_rate(score, rows[name], batch, seconds))
            best = {name: max(v) for name, v in measured.items()}
            out[f"batch_{batch}"] = {name: round(v) for name, v in best.items()} | {
                "ratio": round(best[c.name] / best["today"], 3)
            }
    out["trees"] = {name: s.n_trees for name, s in scorers.items()}
    return out


def markdown(results: list[dict[str, Any]], run: str, command: str) -> str:
    """``results.md``: the folds table, then the holdout and the rates of those judged."""
    lines = [
        f"# Fraud model candidates ({run})",
        "",
        f"Command: `{command}`; commit {source_facts()['commit']}; machine: 2 cores shared "
        f"with other work, load average {os.getloadavg()[0]:.0f} at the end.",
        "",
        "## Forward folds of the training side",
        "",
        "| candidate | best iterations | mean AUPRC | folds (70, 69 frauds) | at 500 | fit s |",
        "|---|---|---|---|---|---|",
    ]
    for r in (r for r in results if r["stage"] == "folds"):
        lines.append(
            f"| {r['candidate']} | {r['best_iterations']} | {r['mean_auprc']:.4f} | "
            f"{' / '.join(f'{a:.4f}' for a in r['fold_auprc'])} | {r['at_500']:.4f} | "
            f"{' / '.join(str(s) for s in r['fit_s'])} |"
        )
    judged = [r for r in results if r["stage"] == "holdout"]
    if judged:
        lines += [
            "",
            "## Holdout (newest 20 %), judged once",
            "",
            "| candidate | frauds | AUPRC | today's | gain p5 / median / p95 | fit s (today's) |",
            "|---|---|---|---|---|---|",
        ]
        for r in judged:
            g = r["gain"]
            lines.append(
                f"| {r['candidate']} | {r['frauds']} | {r['auprc']:.4f} | "
                f"{r['today_auprc']:.4f} | {g['p5']:+.4f} / {g['median']:+.4f} / "
                f"{g['p95']:+.4f} | {r['fit_s']} ({r['today_fit_s']}) |"
            )
    measured = [r for r in results if r["stage"] == "rates"]
    if measured:
        lines += [
            "",
            "## Model-only scoring rate, compiled scorer (rows/s)",
            "",
            "| candidate | trees | batch 100 (today's) | ratio | batch 1,000 (today's) | ratio |",
            "|---|---|---|---|---|---|",
        ]
        for r in measured:
            name, b1, b2 = r["candidate"], r["batch_100"], r["batch_1000"]
            lines.append(
                f"| {name} | {r['trees'][name]} ({r['trees']['today']}) | {b1[name]} "
                f"({b1['today']}) | {b1['ratio']} | {b2[name]} ({b2['today']}) | {b2['ratio']} |"
            )
    return "\n".join([*lines, "", "## Reading", "", *verdict(results), *READING]) + "\n"


def verdict(results: list[dict[str, Any]]) -> list[str]:
    """One line: the best candidate on the folds at today's 500 iterations, against today."""
    at_500 = {r["candidate"]: r["at_500"] for r in results if r["stage"] == "folds"}
    if "today" not in at_500:
        return []
    best = max(at_500, key=lambda name: at_500[name])
    return [
        f"- At today's 500 iterations the best on the folds is `{best}` "
        f"({at_500[best]:.4f}; today's {at_500['today']:.4f})."
    ]


def report(results_path: Path, out: Path, command: str) -> None:
    """Write ``results.md`` and ``results.json`` of the JSON lines in ``results_path``."""
    results = [json.loads(line) for line in results_path.read_text().splitlines() if line]
    text = markdown(results, out.name, command)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(text)
    facts = {"run": out.name, "command": command, "source": source_facts()}
    summary = facts | {"results": results, "tables": tables(text)}
    (out / "results.json").write_text(json.dumps(summary, indent=1) + "\n")


def emit(result: dict[str, Any], out: Path | None) -> None:
    """Print one result as a JSON line (and append it to ``out``)."""
    line = json.dumps(result)
    print(line, flush=True)
    if out is not None:
        with out.open("a") as handle:
            handle.write(line + "\n")


def main() -> None:
    """``folds``, ``holdout`` or ``rates``: see the module's docstring."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("stage", choices=("folds", "holdout", "rates", "report"))
    parser.add_argument("--publish", type=Path, default=None, help="report: the run folder")
    parser.add_argument("--only", action="append", default=None)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--candidate", default="today+tod")
    parser.add_argument("--bootstrap", type=int, default=2000)
    parser.add_argument("--rate-seconds", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--cache", type=Path, default=Path("results/creditcard.npz"))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--models", type=Path, default=Path("results/fraud-models"))
    args = parser.parse_args()
    if args.stage == "report":
        report(args.out, args.publish, " ; ".join(RUN_COMMANDS))
        return
    load(args.cache, args.data_dir)
    if args.stage == "folds":
        names = args.only or list(CANDIDATES)
        jobs = [(n, args.cache, args.data_dir, args.seed) for n in names]
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            for result in pool.map(_folds_job, jobs):
                emit(result, args.out)
    elif args.stage == "holdout":
        arrays = load(args.cache, args.data_dir)
        emit(
            holdout(CANDIDATES[args.candidate], arrays, args.seed, args.bootstrap, args.models),
            args.out,
        )
    else:
        arrays = load(args.cache, args.data_dir)
        emit(
            rates(CANDIDATES[args.candidate], arrays, args.seed, args.rate_seconds, args.models),
            args.out,
        )


if __name__ == "__main__":
    main()
