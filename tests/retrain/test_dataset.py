"""De-duplication by event id and the split by event time."""

from __future__ import annotations

import numpy as np
import pytest

from inferloop.domains import get_domain
from inferloop.retrain.columns import Columns
from inferloop.retrain.dataset import (
    deduplicate,
    holdout_size,
    new_label_count,
    newest_holding,
    time_split,
)
from inferloop.retrain.errors import NotEnoughDataError
from inferloop.retrain.gate import PAUC_MIN_NEGATIVES
from inferloop.retrain.recipe import Recipe
from inferloop.settings import RetrainSettings

SPEC = get_domain("transactions")


def _columns(
    ids: list[str],
    times: list[float],
    labelled: list[float],
    y: list[int],
    partition: list[int] | None = None,
) -> Columns:
    n = len(ids)
    return Columns(
        partition=np.asarray(partition or [0] * n, dtype=np.int32),
        offset=np.arange(n, dtype=np.int64),
        ids=np.array([i.encode() for i in ids]),
        event_time_s=np.asarray(times, dtype=np.float64),
        labelled_at_s=np.asarray(labelled, dtype=np.float64),
        y=np.asarray(y, dtype=np.int8),
        rows=np.arange(n * 29, dtype=np.float64).reshape(n, 29),
    )


def test_the_latest_label_of_an_event_wins_and_order_is_by_event_time() -> None:
    cols = _columns(
        ids=["b", "a", "b", "c", "a"],
        times=[20, 10, 20, 5, 10],
        labelled=[100, 100, 300, 100, 50],  # b relabelled later; a's second label is older
        y=[0, 1, 1, 0, 0],
    )
    examples, dropped = deduplicate(cols, SPEC)
    assert dropped == 2
    assert [bytes(i).decode() for i in examples.ids] == ["c", "a", "b"]
    assert examples.y.tolist() == [0, 1, 1]
    assert examples.offset.tolist() == [3, 1, 2]
    # The rows travel with their example.
    assert examples.rows[:, 0].tolist() == [3 * 29, 1 * 29, 2 * 29]


def test_equal_labelled_at_keeps_the_later_record() -> None:
    cols = _columns(ids=["a", "a"], times=[1, 1], labelled=[5, 5], y=[0, 1])
    examples, _ = deduplicate(cols, SPEC)
    assert examples.y.tolist() == [1]


def test_holdout_is_the_newest_mature_slice_and_no_id_is_on_both_sides() -> None:
    n = 100
    cols = _columns(
        [f"e{i}" for i in range(n)], list(range(n)), [1000.0] * n, [i % 2 for i in range(n)]
    )
    examples, _ = deduplicate(cols, SPEC)
    # Events at 90..99 are not mature yet at as_of 100 with a 10 s maturity.
    split = time_split(examples, holdout_fraction=0.2, as_of_s=100.0, maturity_s=10.5)
    times = examples.event_time_s
    assert split.immature == 10
    assert times[split.holdout].tolist() == list(range(72, 90))
    assert times[split.train].max() < times[split.holdout].min() == split.cutoff_s
    assert not set(examples.ids[split.train]) & set(examples.ids[split.holdout])


def test_a_training_window_fits_the_new_source_and_holds_out_a_share_of_the_window() -> None:
    # A shift: 5,000 labels of an old source, then 1,000 of a new one. Cut from the whole
    # log, the holdout (20 %: 1,200) took every label of the new source and the window
    # fitted on the old one (the shift case's live runs).
    old, new = 5000, 1000
    n = old + new
    cols = _columns(
        [f"e{i}" for i in range(n)], list(range(n)), [1e6] * n, [i % 2 for i in range(n)]
    )
    examples, _ = deduplicate(cols, SPEC)
    whole = time_split(examples, holdout_fraction=0.2, as_of_s=1e6, maturity_s=0.0)
    assert len(whole.holdout) == 1200
    assert (whole.train[-500:] < old).all()
    split = time_split(
        examples, holdout_fraction=0.2, as_of_s=1e6, maturity_s=0.0, window_labels=500
    )
    # The window and its holdout are 500 / 0.8 = 625 examples: 125 held out, the newest.
    times = examples.event_time_s
    assert times[split.holdout].tolist() == list(range(n - 125, n))
    assert times[split.train].tolist() == list(range(n - 625, n - 125))
    assert (split.train >= old).all()
    # Fewer examples than a window and its holdout: the usual share, all the rest trains.
    small = time_split(
        examples.take(np.arange(300), SPEC),
        holdout_fraction=0.2, as_of_s=1e6, maturity_s=0.0, window_labels=500,
    )  # fmt: skip
    assert (len(small.holdout), len(small.train)) == (60, 240)
    assert holdout_size(6000, 0.2, None) == 1200
    assert holdout_size(6000, 0.2, 1500) == 375


def test_a_windowed_holdout_reaches_back_to_hold_enough_of_each_class() -> None:
    # SpamAssassin's older half ends on 520 ham in a row: a holdout of the newest 375
    # held 0 or 1 spam, and the gate could not decide (the shift case, every 60 s).
    n = 2000
    y = [i % 2 for i in range(n - 500)] + [0] * 500
    cols = _columns([f"e{i}" for i in range(n)], list(range(n)), [1e6] * n, y)
    examples, _ = deduplicate(cols, SPEC)
    split = time_split(
        examples, holdout_fraction=0.2, as_of_s=1e6, maturity_s=0.0, window_labels=500,
        min_per_class=30,
    )  # fmt: skip
    assert int(examples.y[split.holdout].sum()) == 30
    assert len(split.holdout) == 500 + 60 - 1
    assert len(split.train) == 500
    assert split.train[-1] == n - len(split.holdout) - 1
    assert newest_holding(examples.y, 30) == 559
    assert newest_holding(examples.y[-500:], 30) is None  # then the share rule's size
    short = time_split(
        examples.take(np.arange(n - 600, n), SPEC), holdout_fraction=0.2, as_of_s=1e6,
        maturity_s=0.0, window_labels=500, min_per_class=100,
    )  # fmt: skip
    assert len(short.holdout) == 120  # 20 % of 600: too few positives to reach back for


def test_equal_event_times_fall_on_one_side() -> None:
    cols = _columns(
        [f"e{i}" for i in range(10)], [1, 2, 3, 4, 5, 6, 7, 7, 7, 7], [0] * 10, [0, 1] * 5
    )
    examples, _ = deduplicate(cols, SPEC)
    split = time_split(examples, holdout_fraction=0.2, as_of_s=100, maturity_s=0)
    assert sorted(examples.event_time_s[split.holdout].tolist()) == [7, 7, 7, 7]


def test_nothing_mature_is_not_enough_data() -> None:
    cols = _columns(["a", "b"], [99, 100], [0, 0], [0, 1])
    with pytest.raises(NotEnoughDataError):
        time_split(cols, holdout_fraction=0.2, as_of_s=100, maturity_s=50)


def test_new_labels_are_counted_from_the_champion_lineage() -> None:
    lineage = {
        "source": {
            "topic": "t.labels",
            "partitions": {"0": {"start": 0, "end": 10}, "1": {"start": 0, "end": 5}},
        }
    }
    assert new_label_count({0: 12, 1: 5, 2: 3}, lineage, "t.labels") == 5
    assert new_label_count({0: 12}, lineage, "other.labels") == 12
    assert new_label_count({0: 12}, None, "t.labels") is None


def test_a_windowed_recipe_reaches_back_for_what_the_gate_needs() -> None:
    # 30 positives and 30 negatives were not enough: the gate's partial ROC-AUC needs 50
    # negatives (the shift run of 20261207T225940Z left two candidates undecided).
    emails = get_domain("emails")
    windowed = Recipe.from_settings(emails, RetrainSettings(emails_train_window_labels=1500))
    assert windowed.holdout_min_per_class == PAUC_MIN_NEGATIVES == 50
    plain = Recipe.from_settings(emails, RetrainSettings())
    assert plain.holdout_min_per_class is None
    assert "holdout_min_per_class" not in plain.as_config()
