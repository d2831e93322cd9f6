"""Hashed token counts of a batch of texts, computed with array operations.

scikit-learn's ``HashingVectorizer`` builds every token of every text as a Python
string and hashes them one by one: for the emails domain that was nine tenths of the
time to score an email (words of a 2,600-byte event, character n-grams of its start).
:class:`HashedTokens` does the same job on the batch as one array of code points: the
tokens are runs of a character class, found by comparing neighbours; each token's hash
is a polynomial over its code points, taken from prefix sums in wrapping 64-bit
arithmetic; the counts are one sparse matrix. Python touches each text a few times
(lower-case, join, encode), never each token.

:func:`token_hash` is the same hash of one token in plain Python: the reference the
tests check the array code against, and a way to find which feature a word lands on.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin

Analyzer = Literal["word", "whitespace", "char"]
U64 = np.ndarray[Any, np.dtype[np.uint64]]

# The polynomial's base (odd, so it is invertible modulo 2**64) and the finaliser's
# constants (MurmurHash3's fmix64), which spread the polynomial's low bits.
_BASE = 0x100000001B3
_BASE_INVERSE = pow(_BASE, -1, 2**64)
_MASK64 = 2**64 - 1
_FMIX_1 = 0xFF51AFD7ED558CCD
_FMIX_2 = 0xC4CEB9FE1A85EC53
_LENGTH_SALT = 0x9E3779B97F4A7C15
# Texts are transformed in chunks of about this many characters, so that a batch of
# long texts (a retrain's whole data set) needs bounded memory: ~40 bytes a character.
CHUNK_CHARS = 2_000_000
# Between two texts of a chunk, and after the last: a space ends every token, so none
# runs from one text into the next.
_SEPARATOR = " "
# No code point below this one is a combining mark.
_FIRST_COMBINING = 0x300
_WORD_ASCII = np.array([chr(c).isalnum() or c == ord("_") for c in range(128)])
_SPACE_ASCII = np.array([chr(c).isspace() for c in range(128)])


def _fmix64(h: int) -> int:
    h ^= h >> 33
    h = (h * _FMIX_1) & _MASK64
    h ^= h >> 33
    h = (h * _FMIX_2) & _MASK64
    return h ^ (h >> 33)


def token_hash(token: str) -> int:
    """The 64-bit hash :class:`HashedTokens` gives ``token`` (its code points, as is)."""
    h = 0
    for char in token:
        h = (h * _BASE + ord(char)) & _MASK64
    return _fmix64(h ^ ((len(token) * _LENGTH_SALT) & _MASK64))


def _fmix64_array(h: U64) -> U64:
    """fmix64 of each of ``h``, in place (``h`` is returned)."""
    shifted = np.empty_like(h)
    for factor in (_FMIX_1, _FMIX_2):
        h ^= np.right_shift(h, np.uint64(33), out=shifted)
        h *= np.uint64(factor)
    h ^= np.right_shift(h, np.uint64(33), out=shifted)
    return h


def strip_accents(text: str) -> str:
    """``text`` decomposed (NFKD) without its combining marks ("café" -> "cafe"), one
    character at a time: what :class:`HashedTokens` does to a batch in arrays."""
    if text.isascii():
        return text
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def _class_mask(codes: np.ndarray[Any, Any], ascii_table: np.ndarray[Any, Any], test: Any) -> Any:
    """Which code points belong to a class: a table for ASCII, ``test`` once per distinct
    code point above it."""
    high = np.flatnonzero(codes >= 128)
    if not len(high):
        return ascii_table[codes]
    # The high code points' entries are wrong until they are set below.
    mask = ascii_table[codes & np.uint32(127)]
    mask[high] = _high_class(codes[high], test)
    return mask


def _high_class(codes: np.ndarray[Any, Any], test: Any) -> Any:
    """``test`` of each code point, called once per distinct one."""
    distinct, inverse = np.unique(codes, return_inverse=True)
    return np.array([bool(test(chr(c))) for c in distinct], dtype=bool)[inverse]


def _is_combining(char: str) -> bool:
    return unicodedata.combining(char) != 0


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


def _is_not_space(char: str) -> bool:
    return not char.isspace()


def _power_table(base: int, size: int) -> U64:
    factors = np.full(size, base, dtype=np.uint64)
    factors[0] = 1
    # Wrapping products are arithmetic modulo 2**64.
    return np.cumprod(factors, dtype=np.uint64)


# (BASE**j, BASE**-j) for j below their length, replaced whole when a longer one is
# needed (one assignment: threads never see the two of different lengths).
_powers_cache: dict[str, tuple[U64, U64]] = {}


def _powers(n: int) -> tuple[U64, U64]:
    """BASE**j and BASE**-j modulo 2**64 for j < n, from a cache that grows as needed."""
    table = _powers_cache.get("powers")
    if table is None or len(table[0]) < n:
        size = max(n, CHUNK_CHARS + 1)
        table = (_power_table(_BASE, size), _power_table(_BASE_INVERSE, size))
        _powers_cache["powers"] = table
    return table[0][:n], table[1][:n]


class _Chunk:
    """A chunk of texts as one array of code points with prefix hashes."""

    def __init__(self, texts: Sequence[str], *, drop_combining: bool = False) -> None:
        joined = _SEPARATOR.join(texts) + _SEPARATOR
        self.codes = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32)
        # Each text's length with its separator, and where each text's separator is.
        self.lengths = np.fromiter((len(t) + 1 for t in texts), dtype=np.int64, count=len(texts))
        self.separators = np.cumsum(self.lengths) - 1
        if drop_combining:
            self._drop_combining()
        self.starts = self.separators - self.lengths + 1
        n = len(self.codes)
        self.powers, inverse_powers = _powers(n)
        # prefix[k] = sum over j < k of code[j] * BASE**-j
        self.prefix = np.zeros(n + 1, dtype=np.uint64)
        np.cumsum(self.codes * inverse_powers, out=self.prefix[1:])

    def _drop_combining(self) -> None:
        high = np.flatnonzero(self.codes >= _FIRST_COMBINING)
        if not len(high):
            return
        dropped = high[_high_class(self.codes[high], _is_combining)]
        if not len(dropped):
            return
        self.codes = np.delete(self.codes, dropped)
        # Each separator moves back by the marks dropped before it.
        self.separators = self.separators - np.searchsorted(dropped, self.separators)
        self.lengths = np.diff(self.separators, prepend=-1)

    def hashes(self, begin: np.ndarray[Any, Any], end: np.ndarray[Any, Any]) -> U64:
        """The hash of each span ``[begin, end)``, as :func:`token_hash` computes it."""
        poly = self.prefix[end]
        poly -= self.prefix[begin]
        poly *= self.powers[end - 1]
        salted = (end - begin).astype(np.uint64)
        salted *= np.uint64(_LENGTH_SALT)
        poly ^= salted
        return _fmix64_array(poly)

    def text_of(self, positions: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Which text of the chunk each position lies in."""
        return np.searchsorted(self.starts, positions, side="right") - 1


def _csr_counts(
    rows: np.ndarray[Any, Any], columns: np.ndarray[Any, Any], shape: tuple[int, int], dtype: Any
) -> sp.csr_matrix:
    """The CSR matrix of how often each (row, column) pair occurs, indices sorted.

    What ``coo_matrix(...).tocsr()`` gives, at less than half its cost: one sort of
    the pairs as single integers (SIMD-sorted by numpy), then run lengths.
    """
    n_rows, n_columns = shape
    # 32-bit keys when they fit: they sort twice as fast.
    key_dtype = np.int32 if n_rows * n_columns < 2**31 else np.int64
    keys: np.ndarray[Any, Any] = rows.astype(key_dtype)
    np.multiply(keys, n_columns, out=keys)
    np.add(keys, columns, out=keys, casting="same_kind")
    keys.sort()
    if len(keys):
        starts = np.empty(len(keys), dtype=bool)
        starts[0] = True
        np.not_equal(keys[1:], keys[:-1], out=starts[1:])
        firsts = np.flatnonzero(starts)
        keys = keys[firsts]
        counts = np.diff(firsts, append=len(starts)).astype(dtype)
    else:
        counts = np.zeros(0, dtype=dtype)
    row_of, indices = np.divmod(keys, n_columns)
    index_dtype = np.int32 if max(len(keys), n_columns) < 2**31 else np.int64
    indptr = np.zeros(n_rows + 1, dtype=index_dtype)
    np.cumsum(np.bincount(row_of, minlength=n_rows), out=indptr[1:])
    matrix = sp.csr_matrix((counts, indices.astype(index_dtype), indptr), shape=shape)
    matrix.has_sorted_indices = True
    matrix.has_canonical_format = True
    return matrix


def _runs(mask: np.ndarray[Any, Any], min_length: int) -> tuple[Any, Any]:
    """[begin, end) of each maximal run of True in ``mask`` at least ``min_length`` long."""
    padded = np.zeros(len(mask) + 2, dtype=bool)
    padded[1:-1] = mask
    # Where the mask changes: a run's begin, then its end, alternately.
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    begin, end = edges[0::2], edges[1::2]
    keep = end - begin >= min_length
    return begin[keep], end[keep]


class HashedTokens(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Counts of hashed tokens per text: a ``(len(texts), n_features)`` CSR matrix.

    ``analyzer``:

    - ``"word"``: runs of two or more word characters (letters, digits, ``_``), the
      tokens of scikit-learn's default pattern ``(?u)\\b\\w\\w+\\b``;
    - ``"whitespace"``: runs of non-space characters;
    - ``"char"``: character n-grams, ``ngram_range`` long, of the text with each run
      of white space made one space and one space added at both ends.

    ``lowercase`` and ``strip_accents`` (NFKD, combining marks removed) apply first.
    Stateless: ``fit`` learns nothing, and an unseen token costs nothing.
    """

    def __init__(
        self,
        analyzer: Analyzer = "word",
        *,
        n_features: int = 2**20,
        ngram_range: tuple[int, int] = (1, 1),
        lowercase: bool = True,
        strip_accents: bool = False,
        dtype: Any = np.float32,
    ) -> None:
        self.analyzer = analyzer
        self.n_features = n_features
        self.ngram_range = ngram_range
        self.lowercase = lowercase
        self.strip_accents = strip_accents
        self.dtype = dtype

    def fit(self, texts: Any, y: Any = None) -> HashedTokens:
        """Check the parameters; nothing is learnt."""
        self._check_params()
        return self

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.input_tags.string = True
        return tags

    def _check_params(self) -> None:
        if self.analyzer not in ("word", "whitespace", "char"):
            raise ValueError(f"analyzer must be word, whitespace or char, not {self.analyzer!r}")
        if not (isinstance(self.n_features, int) and self.n_features >= 1):
            raise ValueError(f"n_features must be a positive integer, not {self.n_features!r}")
        low, high = self.ngram_range
        if not 1 <= low <= high:
            raise ValueError(f"ngram_range must be (min, max) with 1 <= min <= max: {low, high}")
        if self.analyzer != "char" and self.ngram_range != (1, 1):
            raise ValueError("ngram_range other than (1, 1) needs analyzer='char'")

    def transform(self, texts: Iterable[Any]) -> sp.csr_matrix:
        """The token counts of each of ``texts`` (strings)."""
        self._check_params()
        prepared = [self._prepare(str(text)) for text in texts]
        blocks = [self._counts(chunk) for chunk in self._chunks(prepared)]
        if not blocks:
            return sp.csr_matrix((0, self.n_features), dtype=self.dtype)
        return sp.vstack(blocks, format="csr") if len(blocks) > 1 else blocks[0]

    def _prepare(self, text: str) -> str:
        if self.lowercase:
            text = text.lower()
        if self.strip_accents and not text.isascii():
            # The combining marks go in the chunk's arrays (Python's per-character
            # filter, or a pattern of them, costs more than the rest of the transform).
            text = unicodedata.normalize("NFKD", text)
        if self.analyzer == "char":
            text = f" {' '.join(text.split())} "
        return text

    @staticmethod
    def _chunks(texts: list[str]) -> Iterable[list[str]]:
        chunk: list[str] = []
        size = 0
        for text in texts:
            if chunk and size + len(text) > CHUNK_CHARS:
                yield chunk
                chunk, size = [], 0
            chunk.append(text)
            size += len(text) + 1
        if chunk:
            yield chunk

    def _spans(self, chunk: _Chunk) -> tuple[Any, Any, Any]:
        """[begin, end) of each token, and the text it is in."""
        if self.analyzer != "char":
            if self.analyzer == "word":
                begin, end = _runs(_class_mask(chunk.codes, _WORD_ASCII, _is_word), 2)
            else:
                begin, end = _runs(_class_mask(chunk.codes, ~_SPACE_ASCII, _is_not_space), 1)
            return begin, end, chunk.text_of(begin)
        # Every window of each length that ends before its text's separator: a text
        # with its separator L long has L - n windows n long.
        begins, ends, texts = [], [], []
        low, high = self.ngram_range
        text_numbers = np.arange(len(chunk.lengths))
        for n in range(low, high + 1):
            windows = np.maximum(chunk.lengths - n, 0)
            total = int(windows.sum())
            # Positions 0, 1, ... within each text, moved to where the text starts.
            begin = np.arange(total, dtype=np.int64)
            begin += np.repeat(chunk.starts - (np.cumsum(windows) - windows), windows)
            begins.append(begin)
            ends.append(begin + n)
            texts.append(np.repeat(text_numbers, windows))
        return np.concatenate(begins), np.concatenate(ends), np.concatenate(texts)

    def _counts(self, texts: list[str]) -> sp.csr_matrix:
        chunk = _Chunk(texts, drop_combining=self.strip_accents)
        begin, end, rows = self._spans(chunk)
        columns = chunk.hashes(begin, end)
        columns %= np.uint64(self.n_features)
        # Below n_features: the same values as signed integers.
        return _csr_counts(rows, columns.view(np.int64), (len(texts), self.n_features), self.dtype)
