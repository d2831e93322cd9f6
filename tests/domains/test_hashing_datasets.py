"""Native text preparation against Python's on every email of both data sets.

The emails pipeline's token blocks (words of the text, accents stripped; character
n-grams of its start) and the header tokens, counted with the texts lower-cased and
stripped of accents in the native loop and by ``HashedTokens._prepare``: the same
counts, text by text. The data sets are read from the settings' data directory
(../shared/data).
"""

from __future__ import annotations

import numpy as np
import pytest

from inferloop.domains import get_domain, hashing
from inferloop.domains.datasets import load_dataset
from inferloop.domains.emails import HEAD_COLUMN, META_COLUMN, TEXT_COLUMN
from inferloop.domains.hashing import HashedTokens
from inferloop.settings import Settings

BLOCKS = [
    (HashedTokens("word", strip_accents=True), TEXT_COLUMN),
    (HashedTokens("char", ngram_range=(1, 4)), HEAD_COLUMN),
    (HashedTokens("whitespace"), META_COLUMN),
]


@pytest.mark.parametrize("name", ["sms", "spamassassin"])
def test_every_email_counts_the_same_prepared_natively_or_in_python(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    spec = get_domain("emails")
    rows = spec.to_rows(load_dataset(name, Settings().data_dir).events)
    assert len(rows) > 5000
    for vectorizer, column in BLOCKS:
        texts = rows[:, column]
        monkeypatch.setattr(hashing.native_preparation, "enabled", True)
        native = vectorizer.counts(texts)
        monkeypatch.setattr(hashing.native_preparation, "enabled", False)
        python = vectorizer.counts(texts)
        for got, want in (
            (native.indptr, python.indptr),
            (native.columns, python.columns),
            (native.counts, python.counts),
        ):
            assert np.array_equal(got, want), (name, vectorizer.analyzer)
