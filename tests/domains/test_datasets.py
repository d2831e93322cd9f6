"""Loaders of the real data sets (in ../shared/data, as in CI), and the split rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inferloop.domains import DatasetNotFoundError, get_domain
from inferloop.domains import schemas as s
from inferloop.domains.datasets import (
    deduplicate,
    holdout_split,
    load_creditcard,
    load_dataset,
    load_sms,
    load_spamassassin,
)
from inferloop.errors import DataNotFoundError
from inferloop.settings import Settings


@pytest.fixture(scope="module")
def data_dir() -> Path:
    """Where the data sets are: the settings' data directory (../shared/data)."""
    return Settings().data_dir


@pytest.mark.parametrize("name", ["sms", "spamassassin", "creditcard"])
def test_missing_data_set_says_where_it_looked_and_where_to_get_it(
    tmp_path: Path, name: str
) -> None:
    with pytest.raises(DatasetNotFoundError) as caught:
        load_dataset(name, tmp_path)
    message = str(caught.value)
    assert str(tmp_path) in message
    assert "INFERLOOP_DATA_DIR" in message
    assert "obtain it from" in message
    assert isinstance(caught.value, DataNotFoundError)


def test_sms_keeps_every_line_despite_stray_quotes(data_dir: Path) -> None:
    dataset = load_sms(data_dir)
    assert len(dataset) == 5574
    assert int(dataset.y.sum()) == 747
    deduplicated, dropped = deduplicate(dataset)
    assert dropped == 403
    times = [e.event_time for e in deduplicated.events]
    assert times == sorted(times)


def test_sms_holdout_is_the_end_of_the_file(data_dir: Path) -> None:
    dataset, _ = deduplicate(load_sms(data_dir))
    train, holdout = holdout_split(dataset, 0.2)
    assert len(holdout) == round(len(dataset) * 0.2)
    assert train.max() < holdout.min()


def test_spamassassin_messages_become_valid_events(data_dir: Path) -> None:
    dataset = load_spamassassin(data_dir, per_folder=40)
    assert len(dataset) == 200
    assert int(dataset.y.sum()) == 80
    # Every event survives its own JSON round trip through the worker's validation.
    values = [e.model_dump_json().encode() for e in dataset.events]
    batch = get_domain("emails").validate_batch(values)
    assert batch.rejects == []
    assert len({e.id for e in batch.events}) == 200
    assert all(e.event_time.tzinfo is not None for e in batch.events)
    emails = [e for e in dataset.events if isinstance(e, s.EmailEvent)]
    assert sum(1 for e in emails if e.body) >= 195


def test_spamassassin_holds_out_the_newest_of_each_class(data_dir: Path) -> None:
    dataset = load_spamassassin(data_dir, per_folder=40)
    train, holdout = holdout_split(dataset, 0.25)
    for label in (0, 1):
        train_times = [dataset.events[i].event_time for i in train if dataset.y[i] == label]
        held_times = [dataset.events[i].event_time for i in holdout if dataset.y[i] == label]
        assert len(held_times) == round(0.25 * (len(train_times) + len(held_times)))
        assert max(train_times) <= min(held_times)


def test_creditcard_is_time_ordered_and_deduplicated(data_dir: Path) -> None:
    dataset = load_creditcard(data_dir)
    assert len(dataset) == 227_845
    assert int(dataset.y.sum()) == 417
    first = dataset.events[0]
    assert isinstance(first, s.TransactionEvent)
    assert first.id == "cc-000000"
    assert first.amount == 149.62
    part = dataset.subset(np.arange(20_000))
    deduplicated, dropped = deduplicate(part)
    assert dropped > 0
    assert len(deduplicated) + dropped == 20_000
    rows = get_domain("transactions").to_rows(part.events[:5])
    assert rows.shape == (5, 29)
