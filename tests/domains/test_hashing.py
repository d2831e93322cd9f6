"""The array hashing of token counts against a plain-Python reference, token by token."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone

from inferloop.domains import hashing
from inferloop.domains.hashing import HashedTokens, strip_accents, token_hash
from inferloop.domains.trees import COMPILE_FALLBACKS

TEXTS = [
    "Hello, world! Free £1000 now, CLICK here_now",
    "",
    "café CAFÉ naïve Ångström x y zz",
    "a\tb\n\nc  dd\u00a0ee",
    "日本語のテキスト ok_go 42 4.2",
    "fr33 v1agra $$$ !!! :-)",
    "e\u0301\u0301tude",  # combining marks only, after a letter
]


def reference(
    analyzer: str, text: str, *, ngram: tuple[int, int], lower: bool, accents: bool
) -> Counter[int]:
    """What HashedTokens should count for ``text``, one Python string per token."""
    if lower:
        text = text.lower()
    if accents:
        text = strip_accents(text)
    if analyzer == "word":
        tokens = re.findall(r"(?u)\b\w\w+\b", text)
    elif analyzer == "whitespace":
        tokens = text.split()
    else:
        padded = f" {' '.join(text.split())} "
        tokens = [
            padded[i : i + n]
            for n in range(ngram[0], ngram[1] + 1)
            for i in range(len(padded) - n + 1)
        ]
    return Counter(token_hash(t) % 2**20 for t in tokens)


@pytest.mark.parametrize(
    ("analyzer", "ngram"),
    [("word", (1, 1)), ("whitespace", (1, 1)), ("char", (1, 4)), ("char", (3, 5))],
)
@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("accents", [True, False])
def test_counts_are_the_reference_tokens_hashed(
    analyzer: str, ngram: tuple[int, int], lower: bool, accents: bool
) -> None:
    vectorizer = HashedTokens(analyzer, ngram_range=ngram, lowercase=lower, strip_accents=accents)  # type: ignore[arg-type]
    counts = vectorizer.fit_transform(TEXTS)
    assert counts.shape == (len(TEXTS), 2**20)
    assert counts.dtype == np.float32
    for i, text in enumerate(TEXTS):
        row = counts.getrow(i)
        got = dict(zip(row.indices.tolist(), row.data.tolist(), strict=True))
        assert got == dict(reference(analyzer, text, ngram=ngram, lower=lower, accents=accents))


def test_words_are_runs_of_two_or_more_word_characters() -> None:
    counts = HashedTokens("word").transform(["a bb ccc bb"])
    assert counts[0, token_hash("bb") % 2**20] == 2
    assert counts[0, token_hash("ccc") % 2**20] == 1
    assert counts.nnz == 2


def test_accents_are_stripped_and_case_folded() -> None:
    vectorizer = HashedTokens("word", strip_accents=True)
    assert (vectorizer.transform(["Café"]) != vectorizer.transform(["cafe"])).nnz == 0


def test_chunks_give_the_same_counts_as_one_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [f"text {i} " + "word " * (i % 7) for i in range(200)]
    whole = HashedTokens("char", ngram_range=(1, 3)).transform(texts)
    monkeypatch.setattr(hashing, "CHUNK_CHARS", 50)
    chunked = HashedTokens("char", ngram_range=(1, 3)).transform(texts)
    assert (whole != chunked).nnz == 0


def test_an_empty_batch_is_an_empty_matrix() -> None:
    assert HashedTokens().transform([]).shape == (0, 2**20)
    assert HashedTokens().transform(["", "a !"]).nnz == 0


def test_the_matrix_is_canonical_csr() -> None:
    # It says its indices are sorted and summed (TfidfTransformer and the model rely on
    # it): within each row they must strictly increase.
    counts = HashedTokens("char", ngram_range=(1, 4)).transform(TEXTS * 3)
    assert counts.has_canonical_format
    for i in range(counts.shape[0]):
        row = counts.indices[counts.indptr[i] : counts.indptr[i + 1]]
        assert (np.diff(row) > 0).all()


@pytest.mark.parametrize("n_features", [2**28, 2**30, 2**31 + 11])
def test_texts_in_several_key_groups_count_the_same(n_features: int) -> None:
    # Keys are (text in its group, column): 2**31 // n_features texts a group in 32 bits
    # (8 and 2 here), and 64-bit keys beyond 2**30 features.
    vectorizer = HashedTokens("word", n_features=n_features)
    texts = TEXTS * 3
    counts = vectorizer.transform(texts)
    for i, text in enumerate(texts):
        row = counts.getrow(i)
        words = re.findall(r"(?u)\b\w\w+\b", text.lower())
        want = Counter(token_hash(t) % n_features for t in words)
        assert dict(zip(row.indices.tolist(), row.data.tolist(), strict=True)) == dict(want)


@pytest.mark.parametrize("sort_keys", [1, 7, 40, hashing.SORT_KEYS])
def test_texts_in_groups_of_few_keys_count_as_each_alone(
    monkeypatch: pytest.MonkeyPatch, sort_keys: int
) -> None:
    # Keys are sorted in groups of at most SORT_KEYS tokens (a longer text alone), so
    # group ends fall inside runs of short texts and around long ones.
    texts = [("spam " * (i % 11)) + TEXTS[i % len(TEXTS)] * (1 + i % 4) for i in range(60)]
    monkeypatch.setattr(hashing, "SORT_KEYS", sort_keys)
    vectorizer = HashedTokens("char", ngram_range=(1, 4))
    together = vectorizer.transform(texts)
    alone = sp.vstack([vectorizer.transform([text]) for text in texts]).tocsr()
    assert together.has_canonical_format
    assert (together != alone).nnz == 0
    for i in range(together.shape[0]):
        row = together.indices[together.indptr[i] : together.indptr[i + 1]]
        assert (np.diff(row) > 0).all()


def test_code_points_first_seen_are_classified_then_counted() -> None:
    # Runic letters and an ogham space mark: the classes table learns them on first use.
    text = "\u16a0\u16a2x\u1680\u16b3\u16b7 ab"
    fresh = [ord(c) for c in text if ord(c) >= 128]
    assert all(hashing._classes.table[c] == 0 for c in fresh)
    counts = HashedTokens("word").transform([text])
    assert all(hashing._classes.table[c] != 0 for c in fresh)
    want = Counter(token_hash(t) % 2**20 for t in ["\u16a0\u16a2x", "\u16b3\u16b7", "ab"])
    row = counts.getrow(0)
    assert dict(zip(row.indices.tolist(), row.data.tolist(), strict=True)) == dict(want)


def test_bad_parameters_are_named() -> None:
    with pytest.raises(ValueError, match="analyzer"):
        HashedTokens("letters").fit(["x"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ngram_range"):
        HashedTokens("word", ngram_range=(1, 2)).fit(["x"])
    with pytest.raises(ValueError, match="n_features"):
        HashedTokens(n_features=0).fit(["x"])


def test_clones_and_params_round_trip() -> None:
    vectorizer = HashedTokens("char", n_features=2**10, ngram_range=(2, 3))
    copy = clone(vectorizer)
    assert copy.get_params() == vectorizer.get_params()
    assert (copy.transform(["abc"]) != vectorizer.transform(["abc"])).nnz == 0


# Lower-cased by context (a final sigma), expanded (İ, ß, ligatures, U+FDFA's 18
# characters, spacing accents that decompose to a space and a combining mark), combining
# marks beside spaces, Unicode spaces, a lone surrogate, scripts beyond Latin.
_AWKWARD = [
    "ΟΔΟΣ ΣΟΦΟΣ Σ ΑΣ. σΣ",
    "İstanbul STRASSE straße ﬃ ﬁx Ⅻ ㎏ \ufdfa",
    "a \u0301 b \u0301\u0301c\u0301 \u00a8x \u00b4 \u02dc",
    "x\u00a0y\u2003z\u3000w\x1cv\x85u\u200bt",
    "\ud800 lone \udfff",
    "ǅ ǈ Ǳ ῼ ᾈ K Ω Å",
    "한국어 텍스트 日本語 Ελληνικά Русский",
    "  \t\n  ",
]


def _same(a: hashing.TokenCounts, b: hashing.TokenCounts) -> bool:
    return all(
        np.array_equal(x, y)
        for x, y in ((a.indptr, b.indptr), (a.columns, b.columns), (a.counts, b.counts))
    )


def _awkward_texts(n: int, seed: int) -> list[str]:
    """``n`` texts mixing ASCII, the awkward characters above and random code points."""
    rng = np.random.default_rng(seed)
    awkward = sorted({ord(c) for text in _AWKWARD for c in text})
    texts = list(_AWKWARD)
    for _ in range(n):
        size = int(rng.integers(0, 60))
        pick = rng.random(size)
        codes = np.where(
            pick < 0.35,
            rng.integers(0, 128, size),
            np.where(pick < 0.7, rng.choice(awkward, size), rng.integers(0x80, 0x110000, size)),
        )
        texts.append("".join(map(chr, codes.tolist())))
    return texts


@pytest.mark.parametrize(
    ("analyzer", "ngram"),
    [("word", (1, 1)), ("whitespace", (1, 1)), ("char", (1, 4)), ("char", (2, 3))],
)
@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("accents", [True, False])
def test_native_preparation_counts_what_python_preparation_counts(
    monkeypatch: pytest.MonkeyPatch,
    analyzer: str,
    ngram: tuple[int, int],
    lower: bool,
    accents: bool,
) -> None:
    # Lower-casing and accent stripping per code point (the case map) against
    # HashedTokens._prepare on whole texts.
    texts = _awkward_texts(600, seed=7)
    vectorizer = HashedTokens(analyzer, ngram_range=ngram, lowercase=lower, strip_accents=accents)  # type: ignore[arg-type]
    native = vectorizer.counts(texts)
    monkeypatch.setattr(hashing.native_preparation, "enabled", False)
    python = vectorizer.counts(texts)
    assert _same(native, python)
    assert native.indptr[-1] > 1000


def test_a_text_with_a_capital_sigma_is_prepared_in_python() -> None:
    # "ΟΔΟΣ" ends in a final sigma (ς), "ΣΟΦΟΣ" has both; a lone Σ is σ.
    vectorizer = HashedTokens("word")
    row = vectorizer.transform(["ΟΔΟΣ ΣΟΦΟΣ Σα"]).getrow(0)
    want = Counter(token_hash(t) % 2**20 for t in ["οδος", "σοφος", "σα"])
    assert dict(zip(row.indices.tolist(), row.data.tolist(), strict=True)) == dict(want)


def test_a_failing_native_preparation_falls_back_to_python(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    texts = _awkward_texts(50, seed=3)
    vectorizer = HashedTokens("word", strip_accents=True)
    want = vectorizer.counts(texts)
    before = _fallbacks("text preparation")

    def broken(self: HashedTokens, texts: list[str]) -> object:
        raise RuntimeError("no native loop")

    monkeypatch.setattr(HashedTokens, "_mapped_points", broken)
    monkeypatch.setattr(hashing.native_preparation, "enabled", True)
    with caplog.at_level("WARNING", logger="inferloop.domains.trees"):
        got = vectorizer.counts(texts)
        again = vectorizer.counts(texts)
    assert _same(got, want)
    assert _same(again, want)
    assert not hashing.native_preparation.enabled
    assert _fallbacks("text preparation") == before + 1
    assert "no native loop" in caplog.text


def _fallbacks(scorer: str) -> float:
    return float(COMPILE_FALLBACKS.labels(scorer)._value.get())
