"""Measure the monitor's decision logic on the real data sets (not run by CI).

``python -m bench.monitor_sim [drift|policy|all] [--data-dir DIR] [--replays N]``

Scores come from models trained by the project's own code (``training.fit``) on the
oldest 20 % of a data set (de-duplicated); the rest is the live stream. Four versions
per domain: ``a`` (seed 1), ``b`` (seed 2 on a random 90 % of the training slice: an
equally good refit), ``weak`` (fit on a random 25 % of it: a somewhat worse version)
``noisy`` (``a``'s scores with normal noise of sd 2 on their logits, its threshold) and
``half`` (``a``'s scores at a threshold that misses half the positives ``a`` catches: a
clearly worse version, as a bad manual promotion of a mis-thresholded version would be).
Scores are cached under ``~/.cache/inferloop/monitor_sim`` (delete it to refit).

- **drift**: Page-Hinkley with the tuned defaults (``inferloop/monitor/drift.py``) on a
  stationary stream, version ``a``'s scores and errors on the rest of the data shuffled
  and drawn to 200,000 events, for several seeds: the alarms (target 0) and the largest
  statistic against the threshold (the margin). Then a real shift: the SMS-trained
  model on the rest of the SMS messages (shuffled), then on the SpamAssassin corpus:
  alarms before the shift, and events after it until each detector alarms.
- **policy**: seeded replays of the stream (shuffled) with ``Policy`` deciding at every
  evaluation point, after a promotion from ``a`` to ``x``: ``x = a`` (the same model
  again: A/A), ``x = b`` (an equally good refit: A/A'), ``x = weak``, ``noisy`` and ``half``
  (worse: should be rolled back), each compared three ways (class-balanced, per class,
  unweighted). Reports the false-rollback rate and the labelled events and positives a
  rollback took; and the class-balanced comparison against the unweighted one.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from inferloop.domains import get_domain, training
from inferloop.domains.datasets import Dataset, deduplicate, load_dataset
from inferloop.domains.metrics import threshold_metrics
from inferloop.monitor.drift import DEFAULTS, PageHinkley, StreamKind
from inferloop.monitor.paired import PairedCounts, Weighting
from inferloop.monitor.policy import Comparison, Policy, PolicyConfig, Rollback, Snapshot
from inferloop.settings import Settings

log = logging.getLogger("bench.monitor_sim")

CACHE = Path.home() / ".cache" / "inferloop" / "monitor_sim"
TRAIN_SHARE = 0.2
STATIONARY_EVENTS = 200_000
DATASET = {"emails": "sms", "transactions": "creditcard"}
VERSIONS = ("a", "b", "weak", "noisy", "half")
# The noisy version: a's scores with this much normal noise on their logits.
NOISE_SD = 2.0
KINDS: tuple[StreamKind, ...] = ("score", "error")
FloatArray = np.ndarray[Any, np.dtype[np.float64]]


@dataclass(frozen=True)
class Scored:
    """A live stream (the data after the training slice, in time order) and each
    version's scores and threshold on it."""

    domain: str
    y: np.ndarray[Any, Any]
    scores: dict[str, FloatArray]
    thresholds: dict[str, float]

    def wrong(self, version: str, order: Any = slice(None)) -> FloatArray:
        """1.0 where ``version`` decides wrongly, in ``order``."""
        flagged = self.scores[version][order] >= self.thresholds[version]
        return np.asarray(flagged != self.y[order].astype(bool), dtype=np.float64)


# -- models and scores ---------------------------------------------------------------------
def _fit(domain: str, train: Dataset, seed: int, share: float = 1.0) -> training.Fitted:
    spec = get_domain(domain)
    if share < 1.0:
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.choice(len(train), size=int(share * len(train)), replace=False))
        train = train.subset(keep)
    started = time.perf_counter()
    fitted = training.fit(spec, spec.to_rows(train.events), train.y, seed=seed)
    log.info(
        "fit %s (seed %d, %.0f %%): %.1f s",
        domain,
        seed,
        100 * share,
        time.perf_counter() - started,
    )
    return fitted


def _split(domain: str, data_dir: Path) -> tuple[Dataset, Dataset]:
    dataset, _ = deduplicate(load_dataset(DATASET[domain], data_dir))
    cut = int(TRAIN_SHARE * len(dataset))
    return dataset.subset(np.arange(cut)), dataset.subset(np.arange(cut, len(dataset)))


# (seed, share of the training slice) of each version.
FITS = {"a": (1, 1.0), "b": (2, 0.9), "weak": (3, 0.25)}


def scored(domain: str, data_dir: Path) -> Scored:
    """Each version's scores on the live stream: cached, or fitted now and cached."""
    split: tuple[Dataset, Dataset] | None = None
    scores, thresholds = {}, {}
    y: np.ndarray[Any, Any] = np.empty(0)
    for version in FITS:
        path = CACHE / f"{domain}-{version}.npz"
        if not path.exists():
            split = split or _split(domain, data_dir)
            _fit_and_save(domain, version, split, data_dir, path)
        saved = np.load(path)
        y, scores[version] = saved["y"], saved["score"]
        thresholds[version] = float(saved["threshold"])
    scores["noisy"], thresholds["noisy"] = _noisy(scores["a"]), thresholds["a"]
    # A bad threshold: half of the positives a catches are missed.
    caught = scores["a"][(y == 1) & (scores["a"] >= thresholds["a"])]
    scores["half"], thresholds["half"] = scores["a"], float(np.median(caught))
    return Scored(domain, y, scores, thresholds)


def _noisy(scores: FloatArray) -> FloatArray:
    """A clearly worse version: ``scores`` with noise on their logits, same threshold."""
    clipped = np.clip(scores, 1e-9, 1 - 1e-9)
    noise = np.random.default_rng(4).normal(0.0, NOISE_SD, len(scores))
    return np.asarray(1 / (1 + np.exp(-(np.log(clipped / (1 - clipped)) + noise))))


def _fit_and_save(
    domain: str, version: str, split: tuple[Dataset, Dataset], data_dir: Path, path: Path
) -> None:
    (train, rest), (seed, share) = split, FITS[version]
    fitted = _fit(domain, train, seed, share)
    score = fitted.pipeline.predict_proba(get_domain(domain).to_rows(rest.events))[:, 1]
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, y=rest.y, score=score, threshold=np.float64(fitted.threshold))
    if domain == "emails" and version == "a":
        _write_shift(fitted, rest, data_dir)


def _write_shift(fitted: training.Fitted, rest: Dataset, data_dir: Path) -> None:
    spam, _ = deduplicate(load_dataset("spamassassin", data_dir))
    spec = get_domain("emails")
    parts = []
    for part in (rest, spam):
        score = fitted.pipeline.predict_proba(spec.to_rows(part.events))[:, 1]
        parts.append((score, ((score >= fitted.threshold) != part.y.astype(bool)) * 1.0))
    order = np.random.default_rng(0).permutation(len(parts[0][0]))
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(
        CACHE / "shift.npz", score=np.r_[parts[0][0][order], parts[1][0]],
        wrong=np.r_[parts[0][1][order], parts[1][1]], shift_at=len(order),
    )  # fmt: skip


def shift_stream(data_dir: Path) -> tuple[FloatArray, FloatArray, int]:
    """The SMS-trained model's scores and errors: SMS (shuffled), then SpamAssassin; and
    where the shift starts."""
    path = CACHE / "shift.npz"
    if not path.exists():
        train, rest = _split("emails", data_dir)
        _write_shift(_fit("emails", train, 1), rest, data_dir)
    saved = np.load(path)
    return saved["score"], saved["wrong"], int(saved["shift_at"])


# -- drift -------------------------------------------------------------------------------
def run_detector(detector: PageHinkley, values: Iterable[float]) -> tuple[list[int], float]:
    """(event positions of the alarms, the largest statistic seen)."""
    alarms, top = [], 0.0
    for position, value in enumerate(values):
        if detector.update(value):
            alarms.append(position)
        top = max(top, detector.statistic)
    return alarms, top


def drift_section(streams: dict[str, Scored], data_dir: Path, seeds: int) -> list[str]:
    lines = [
        "drift: Page-Hinkley, stationary streams of 200,000 events "
        "(the rest of the data shuffled, drawn with replacement)"
    ]
    for data in streams.values():
        for kind in KINDS:
            lines.append(_stationary_line(data, kind, seeds))
    score, wrong, shift_at = shift_stream(data_dir)
    lines.append(
        f"drift shift: SMS-trained model on {shift_at} SMS messages then "
        f"{len(score) - shift_at} SpamAssassin messages (error rate "
        f"{wrong[:shift_at].mean():.3f} -> {wrong[shift_at:].mean():.3f}, mean score "
        f"{score[:shift_at].mean():.3f} -> {score[shift_at:].mean():.3f})"
    )
    for kind, values in zip(KINDS, (score, wrong), strict=True):
        found, _ = run_detector(PageHinkley(DEFAULTS[("emails", kind)]), values.tolist())
        before = [a for a in found if a < shift_at]
        after = [a - shift_at for a in found if a >= shift_at]
        delay = f"{after[0] + 1} events after it" if after else "none after it"
        lines.append(f"  emails {kind}: {len(before)} alarms before the shift; first: {delay}")
    return lines


def _stationary_line(data: Scored, kind: StreamKind, seeds: int) -> str:
    config = DEFAULTS[(data.domain, kind)]
    alarms, tops = 0, []
    for seed in range(seeds):
        order = np.random.default_rng(seed).choice(len(data.y), STATIONARY_EVENTS)
        values = data.scores["a"][order] if kind == "score" else data.wrong("a", order)
        found, top = run_detector(PageHinkley(config), values.tolist())
        alarms += len(found)
        tops.append(top)
    # The same events in their own time order: not stationary (fraud comes in bursts).
    values = data.scores["a"] if kind == "score" else data.wrong("a")
    in_order, _ = run_detector(PageHinkley(config), values.tolist())
    return (
        f"  {data.domain} {kind}: {alarms} alarms in {seeds} x 200,000 events; largest "
        f"statistic {max(tops):.2f} (median {np.median(tops):.2f}), threshold "
        f"{config.threshold}; in time order ({len(data.y)} events): {len(in_order)} alarms "
        f"at {in_order[:5]}"
    )


# -- policy --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Replay:
    """When (if) a replay rolled back: labelled events and positives seen."""

    rolled_back: bool
    events: int
    positives: int


Counter = Callable[[Any, Any, Any], PairedCounts]


def replay(
    data: Scored, new: str, config: PolicyConfig, *, seed: int, batch: int, counter: Counter
) -> Replay:
    """One probation of ``new`` after ``a``, on the stream shuffled by ``seed``."""
    order = np.random.default_rng(seed).permutation(len(data.y))
    y = data.y[order]
    new_ok = (data.scores[new][order] >= data.thresholds[new]) == y.astype(bool)
    old_ok = (data.scores["a"][order] >= data.thresholds["a"]) == y.astype(bool)
    policy, counts = Policy(config), PairedCounts()
    for start in range(0, len(y), batch):
        part = slice(start, start + batch)
        counts = counts + counter(y[part], new_ok[part], old_ok[part])
        comparison = Comparison(2, 1, counts)
        if not policy.on_probation(comparison):
            break
        if any(isinstance(a, Rollback) for a in policy.evaluate(Snapshot(0.0, 2, comparison))):
            return Replay(True, counts.positives + counts.negatives, counts.positives)
    return Replay(False, counts.positives + counts.negatives, counts.positives)


def balanced_counts(y: Any, new_ok: Any, old_ok: Any) -> PairedCounts:
    """The counts the monitor keeps (pairs weighted by their class's size)."""
    truth = y.astype(bool)
    positives = int(truth.sum())
    return PairedCounts(
        positives, len(y) - positives,
        int((~new_ok & old_ok & truth).sum()), int((new_ok & ~old_ok & truth).sum()),
        int((~new_ok & old_ok & ~truth).sum()), int((new_ok & ~old_ok & ~truth).sum()),
    )  # fmt: skip


def unweighted_counts(y: Any, new_ok: Any, old_ok: Any) -> PairedCounts:
    """Every pair weighted alike: all of them counted as one class (the alternative)."""
    both = balanced_counts(y, new_ok, old_ok)
    new_wrong = both.pos_new_wrong + both.neg_new_wrong
    return PairedCounts(len(y), 0, new_wrong, both.pos_old_wrong + both.neg_old_wrong)


COMPARISONS: tuple[tuple[str, Counter, Weighting], ...] = (
    ("balanced", balanced_counts, "balanced"),
    ("per class", balanced_counts, "per_class"),
    ("unweighted", unweighted_counts, "balanced"),
)


def policy_section(streams: dict[str, Scored], replays: int) -> list[str]:
    lines = [f"policy: {replays} seeded replays (shuffled) per case, probation after a -> x"]
    for domain, data in streams.items():
        for version in VERSIONS:
            m = threshold_metrics(data.y, data.scores[version], data.thresholds[version])
            lines.append(
                f"  {domain} version {version}: precision {m['precision']:.3f} recall "
                f"{m['recall']:.3f} fpr {m['fpr']:.5f} auprc {m['auprc']:.3f} on the live "
                f"stream ({len(data.y)} events, {int(data.y.sum())} positives)"
            )
        config = PolicyConfig(domain=domain)
        batch = 50 if domain == "emails" else 1000
        for new in VERSIONS:
            for name, counter, weighting in COMPARISONS:
                runs = [
                    replay(
                        data, new, replace(config, weighting=weighting),
                        seed=seed, batch=batch, counter=counter,
                    )
                    for seed in range(replays)
                ]  # fmt: skip
                lines.append(_replay_line(domain, new, name, runs))
    return lines


def _replay_line(domain: str, new: str, name: str, runs: list[Replay]) -> str:
    back = [r for r in runs if r.rolled_back]
    share = 100 * len(back) / len(runs)
    line = f"  {domain} a -> {new} ({name}): rolled back {len(back)}/{len(runs)} ({share:.1f} %)"
    if back:
        events = np.array([r.events for r in back])
        positives = np.array([r.positives for r in back])
        line += (
            f"; labelled events to it: median {np.median(events):.0f} "
            f"(p90 {np.percentile(events, 90):.0f}), positives: median "
            f"{np.median(positives):.0f} (p90 {np.percentile(positives, 90):.0f})"
        )
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("section", nargs="?", default="all", choices=["drift", "policy", "all"])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--replays", type=int, default=200)
    parser.add_argument(
        "--seeds", type=int, default=5, help="stationary drift streams per detector"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    data_dir = args.data_dir or Settings().data_dir
    streams = {domain: scored(domain, data_dir) for domain in DATASET}
    lines: list[str] = []
    if args.section in ("drift", "all"):
        lines += drift_section(streams, data_dir, args.seeds)
    if args.section in ("policy", "all"):
        lines += policy_section(streams, args.replays)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
