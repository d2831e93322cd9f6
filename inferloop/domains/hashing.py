"""Hashed token counts of a batch of texts, counted in one native pass.

scikit-learn's ``HashingVectorizer`` builds every token of every text as a Python
string and hashes them one by one: for the emails domain that was nine tenths of the
time to score an email (words of a 2,600-byte event, character n-grams of its start).
:class:`HashedTokens` does the same job on the batch as one array of code points, in
one compiled loop (numba): it finds the tokens (runs of a character class, or
character n-grams), hashes each as a polynomial over its code points in wrapping
64-bit arithmetic, and counts each text's hashed columns, sorted. Python touches each
text twice (join, encode), never each token; what a code point above ASCII is (a
letter, a space, a combining mark) and what it becomes lower-cased and stripped of
accents (NFKD) Python's own ``str`` and ``unicodedata`` say, once per code point and
process (:class:`_CaseMap`), so the native loop prepares the texts as
:meth:`HashedTokens._prepare` does in Python (16 to 23 % less time for the words of a
SpamAssassin email). That Python preparation stays the fallback (a text holding a
capital sigma, which lower-cases by its context; a native loop that fails), and the
tests check both give the same counts on every email of both data sets.

:func:`token_hash` is the same hash of one token in plain Python: the reference the
tests check the native loop against, and a way to find which feature a word lands on.
"""

from __future__ import annotations

import functools
import itertools
import threading
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin

from inferloop.domains.native import Kernel, compile_kernel
from inferloop.domains.trees import fell_back

Analyzer = Literal["word", "whitespace", "char"]
IntArray = np.ndarray[Any, np.dtype[np.int64]]

# The polynomial's base (odd, so it is invertible modulo 2**64) and the finaliser's
# constants (MurmurHash3's fmix64), which spread the polynomial's low bits.
_BASE = 0x100000001B3
_MASK64 = 2**64 - 1
_FMIX_1 = 0xFF51AFD7ED558CCD
_FMIX_2 = 0xC4CEB9FE1A85EC53
_LENGTH_SALT = 0x9E3779B97F4A7C15
# The same constants as the native loop's 64-bit unsigned integers.
_BASE_U64 = np.uint64(_BASE)
_FMIX_1_U64 = np.uint64(_FMIX_1)
_FMIX_2_U64 = np.uint64(_FMIX_2)
_LENGTH_SALT_U64 = np.uint64(_LENGTH_SALT)
_SHIFT_U64 = np.uint64(33)
# Texts are transformed in chunks of about this many characters, so that a batch of
# long texts (a retrain's whole data set) needs bounded memory: ~20 bytes a character.
CHUNK_CHARS = 2_000_000
# Tokens whose keys are sorted together (a text with more is sorted alone): a group
# this small sorts in the cache. Its size changes no count, only the time.
SORT_KEYS = 512
# What a code point is, as bits of its entry in the classes table.
_WORD = 1  # str.isalnum() or "_": word analyzer tokens are runs of these
_SPACE = 2  # str.isspace(): whitespace analyzer tokens are runs of anything else
_COMBINING = 4  # unicodedata.combining() != 0: dropped when accents are stripped
_KNOWN = 8  # the entry has been filled in
_CODE_POINTS = 0x110000
# What a token is for the analyzers of runs: a run of code points whose classes have
# ``classes & mask == want``, at least ``shortest`` long (mask, want, shortest).
_RULES = {"word": (_WORD, _WORD, 2), "whitespace": (_SPACE, 0, 1)}
# Lower-cased by its context (final or not), not alone: a text holding one is prepared
# in Python.
_CAPITAL_SIGMA = "\u03a3"


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


def strip_accents(text: str) -> str:
    """``text`` decomposed (NFKD) without its combining marks ("café" -> "cafe"), one
    character at a time: what :class:`HashedTokens` does to a batch natively."""
    if text.isascii():
        return text
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def _classes_of(char: str) -> int:
    word = _WORD if char.isalnum() or char == "_" else 0
    space = _SPACE if char.isspace() else 0
    combining = _COMBINING if unicodedata.combining(char) else 0
    return word | space | combining | _KNOWN


class _CodePointClasses:
    """A table of every code point's classes, filled in as code points are first seen.

    Filling an entry twice writes the same value, so threads need no lock to read; the
    lock only keeps two threads from computing the same entries at once.
    """

    def __init__(self) -> None:
        self.table = np.zeros(_CODE_POINTS, dtype=np.uint8)
        self.table[:128] = [_classes_of(chr(c)) for c in range(128)]
        self._lock = threading.Lock()

    def learn(self, codes: np.ndarray[Any, Any]) -> None:
        """Fill in the entries of ``codes`` (code points the table does not know yet)."""
        with self._lock:
            for c in np.unique(codes).tolist():
                self.table[c] = _classes_of(chr(c))


_classes = _CodePointClasses()


def _mapped_text(char: str, lowercase: bool, strip: bool) -> str:
    """What ``char`` becomes before tokens are found: lower-cased, then decomposed
    (NFKD) when accents are stripped (the native loop then drops the combining marks).
    Per character, this is what ``_prepare`` does to a whole text, except for a capital
    sigma (lower-cased by its context): lower-casing maps each character alone, and
    NFKD of a text differs from its characters' only in the order of combining marks,
    which are dropped."""
    if lowercase:
        char = char.lower()
    if strip and not char.isascii():
        char = unicodedata.normalize("NFKD", char)
    return char


class _CaseMap:
    """What each code point becomes (:func:`_mapped_text`), filled in as code points are
    first seen: ``entries[c]`` is ``start << 8 | length + 1`` of its code points in
    ``expansion``, 0 while unknown.

    An entry is written once, in one 64-bit store, after its code points; the
    expansion array is replaced, never shrunk, when it grows, so a reader holding an
    older one checks the bounds and takes an entry beyond them as unknown.
    """

    def __init__(self, lowercase: bool, strip: bool) -> None:
        self.lowercase = lowercase
        self.strip = strip
        self.entries = np.zeros(_CODE_POINTS, dtype=np.int64)
        self.expansion = np.zeros(256, dtype=np.uint32)
        self._size = 0
        self._lock = threading.Lock()
        self.learn(np.arange(128, dtype=np.uint32))

    def learn(self, codes: np.ndarray[Any, Any]) -> None:
        """Fill in the entries of ``codes`` (and the classes of what they become)."""
        with self._lock:
            for c in np.unique(codes).tolist():
                if self.entries[c]:
                    continue
                points = [ord(x) for x in _mapped_text(chr(c), self.lowercase, self.strip)]
                new = [p for p in points if not _classes.table[p]]
                if new:
                    _classes.learn(np.asarray(new, dtype=np.uint32))
                start = self._size
                if start + len(points) > len(self.expansion):
                    grown = np.zeros(2 * (start + len(points)), dtype=np.uint32)
                    grown[:start] = self.expansion[:start]
                    self.expansion = grown
                self.expansion[start : start + len(points)] = points
                self._size = start + len(points)
                self.entries[c] = start << 8 | (len(points) + 1)


_case_maps: dict[tuple[bool, bool], _CaseMap] = {}
_case_maps_lock = threading.Lock()


def _case_map(lowercase: bool, strip: bool) -> _CaseMap:
    with _case_maps_lock:
        found = _case_maps.get((lowercase, strip))
        if found is None:
            found = _case_maps[lowercase, strip] = _CaseMap(lowercase, strip)
        return found


# The native loops: numba compiles them on first use (``_kernels``), so coverage does
# not see them run. Each takes its outputs as a tuple of arrays, written in place.


def _code_points(codes: Any, bounds: Any, table: Any, drop_combining: bool, out: Any) -> int:
    """Each text's code points and their classes, without combining marks if dropped.

    ``out`` is (code points, their ``table`` entries, each text's bounds among them,
    unknown): text ``t`` is ``codes[bounds[t]:bounds[t + 1]]``. Returns how many code
    points ``table`` does not know yet, written to ``unknown``: then the output is
    wrong, and the caller fills those entries in and calls again.
    """
    kept, flags, kept_bounds, unknown = out
    n_unknown = 0
    m = 0
    kept_bounds[0] = 0
    for t in range(len(bounds) - 1):
        for p in range(bounds[t], bounds[t + 1]):
            c = codes[p]
            f = table[c]
            if f == 0:
                unknown[n_unknown] = c
                n_unknown += 1
            elif not (drop_combining and f & _COMBINING):
                kept[m] = c
                flags[m] = f
                m += 1
        kept_bounds[t + 1] = m
    return n_unknown


def _mapped_code_points(source: Any, maps: Any, options: Any, out: Any) -> Any:  # noqa: C901, PLR0912 - one native loop, branches and all
    """Each text's code points as :meth:`HashedTokens._prepare` would leave them, and
    their classes.

    ``source`` is (code points, each text's bounds among them): text ``t`` is
    ``codes[bounds[t]:bounds[t + 1]]``. Each code point is mapped through ``maps``
    (a :class:`_CaseMap`'s entries and expansion, and the classes table) and, with
    ``collapse`` (the char analyzer), each run of white space is made one space, none
    at either end, then one space is added at both ends; with ``drop_combining`` the
    combining marks are dropped last. ``options`` is (drop_combining, collapse);
    ``out`` is (code points, classes, each text's bounds among them, unknown).
    Returns (unknown code points, code points needed): when either is over what was
    given, the caller fills the unknown entries in, or gives more room, and calls again.
    """
    codes, bounds = source
    entries, expansion, table = maps
    drop_combining, collapse = options
    kept, flags, kept_bounds, unknown = out
    capacity = len(kept)
    n_unknown = 0
    m = 0
    kept_bounds[0] = 0
    for t in range(len(bounds) - 1):
        if collapse:
            if m < capacity:
                kept[m] = 32
                flags[m] = table[32]
            m += 1
        pending = False
        started = False
        for p in range(bounds[t], bounds[t + 1] + 1):
            if p == bounds[t + 1]:
                start, n = np.int64(0), 0
            elif codes[p] < 128:
                # ASCII is learnt first, in order: code point c's mapping is at c.
                start, n = np.int64(codes[p]), 1
            else:
                e = entries[codes[p]]
                start, n = e >> 8, (e & 255) - 1
                if e == 0 or start + n > len(expansion):
                    unknown[n_unknown] = codes[p]
                    n_unknown += 1
                    continue
            for q in range(start, start + n):
                f = table[expansion[q]]
                if collapse and f & _SPACE:
                    pending = started
                    continue
                if pending:
                    if m < capacity:
                        kept[m] = 32
                        flags[m] = table[32]
                    m += 1
                    pending = False
                started = True
                # Dropped after white space is collapsed, as _prepare's caller drops them.
                if not (drop_combining and f & _COMBINING):
                    if m < capacity:
                        kept[m] = expansion[q]
                        flags[m] = f
                    m += 1
            if p == bounds[t + 1] and collapse:
                if m < capacity:
                    kept[m] = 32
                    flags[m] = table[32]
                m += 1
        kept_bounds[t + 1] = m
    return n_unknown, m


def _mapped_runs(source: Any, maps: Any, rule: Any, out: Any) -> Any:  # noqa: C901, PLR0912 - one native loop, branches and all
    """:func:`_mapped_code_points` and :func:`_runs` in one pass, for the analyzers of
    runs: each text's code points mapped through ``maps`` (combining marks dropped if
    ``drop_combining``), and its tokens, runs of code points with ``classes & mask ==
    want`` at least ``shortest`` long. ``rule`` is (drop_combining, mask, want,
    shortest); ``out`` is (polynomials, lengths, each text's end, unknown). Returns
    (unknown code points, tokens found), as :func:`_mapped_code_points` does.
    """
    codes, bounds = source
    entries, expansion, table = maps
    drop_combining, mask, want, shortest = rule
    polys, lengths, ends, unknown = out
    capacity = len(polys)
    n_unknown = 0
    k = 0
    for t in range(len(bounds) - 1):
        h = np.uint64(0)
        length = 0
        stop = bounds[t + 1]
        for p in range(bounds[t], stop + 1):
            if p < stop:
                c = codes[p]
                if c < 128:
                    # ASCII is learnt first, in order: code point c's mapping is at c,
                    # one code point, never a combining mark.
                    d = expansion[c]
                    if (table[d] & mask) == want:
                        h = h * _BASE_U64 + np.uint64(d)
                        length += 1
                        continue
                else:
                    e = entries[c]
                    start, n = e >> 8, (e & 255) - 1
                    if e == 0 or start + n > len(expansion):
                        unknown[n_unknown] = c
                        n_unknown += 1
                        continue
                    for q in range(start, start + n):
                        f = table[expansion[q]]
                        if drop_combining and f & _COMBINING:
                            continue
                        if (f & mask) == want:
                            h = h * _BASE_U64 + np.uint64(expansion[q])
                            length += 1
                            continue
                        if length >= shortest:
                            if k < capacity:
                                polys[k] = h
                                lengths[k] = length
                            k += 1
                        h = np.uint64(0)
                        length = 0
                    continue
            # The end of the text, or an ASCII code point outside the run.
            if length >= shortest:
                if k < capacity:
                    polys[k] = h
                    lengths[k] = length
                k += 1
            h = np.uint64(0)
            length = 0
        ends[t] = k
    return n_unknown, k


def _runs(text: Any, flags: Any, bounds: Any, rule: Any, out: Any) -> None:
    """The tokens of each text that are runs of code points with ``flags & mask ==
    want``, at least ``shortest`` long (``rule``): their polynomials and lengths, and
    where each text's end (``out``)."""
    mask, want, shortest = rule
    polys, lengths, ends = out
    k = 0
    for t in range(len(bounds) - 1):
        h = np.uint64(0)
        length = 0
        stop = bounds[t + 1]
        for i in range(bounds[t], stop + 1):
            if i < stop and (flags[i] & mask) == want:
                h = h * _BASE_U64 + np.uint64(text[i])
                length += 1
                continue
            if length >= shortest:
                polys[k] = h
                lengths[k] = length
                k += 1
            h = np.uint64(0)
            length = 0
        ends[t] = k


def _ngrams(text: Any, bounds: Any, sizes: Any, out: Any) -> None:
    """Every n-gram of each text, ``sizes`` = (min, max) long: polynomials and lengths,
    and where each text's end (``out``)."""
    low, high = sizes
    polys, lengths, ends = out
    k = 0
    for t in range(len(bounds) - 1):
        stop = bounds[t + 1]
        for i in range(bounds[t], stop):
            h = np.uint64(0)
            for n in range(1, min(high, stop - i) + 1):
                h = h * _BASE_U64 + np.uint64(text[i + n - 1])
                if n >= low:
                    polys[k] = h
                    lengths[k] = n
                    k += 1
        ends[t] = k


def _keys(polys: Any, lengths: Any, ends: Any, layout: Any, out: Any) -> int:
    """Each token's sort key, ``slot * n_features + column``, and the groups of texts
    whose keys are sorted together: ``slot`` is the text's place in its group, its
    column its hash, finalised (fmix64), modulo ``n_features``.

    ``layout`` is (most texts in a group, n_features, most tokens in a group unless
    one text alone has more); ``out`` is (keys, each text's slot, where each group's
    keys end). Returns how many groups there are.
    """
    group_rows, n_features, budget = layout
    keys, slots, group_ends = out
    n_groups = 0
    slot = 0
    group_start = 0
    start = 0
    for t in range(len(ends)):
        if slot == group_rows or (slot > 0 and ends[t] - group_start > budget):
            group_ends[n_groups] = start
            n_groups += 1
            slot = 0
            group_start = start
        slots[t] = slot
        base = slot * n_features
        for r in range(start, ends[t]):
            g = polys[r] ^ (np.uint64(lengths[r]) * _LENGTH_SALT_U64)
            g ^= g >> _SHIFT_U64
            g *= _FMIX_1_U64
            g ^= g >> _SHIFT_U64
            g *= _FMIX_2_U64
            g ^= g >> _SHIFT_U64
            keys[r] = base + np.int64(g % np.uint64(n_features))
        start = ends[t]
        slot += 1
    group_ends[n_groups] = start
    return n_groups + 1


def _tally(keys: Any, ends: Any, slots: Any, n_features: Any, out: Any) -> None:
    """Each text's distinct columns and how often each occurs, from its sorted keys:
    ``out`` is (columns, counts, indptr), a CSR matrix's arrays."""
    columns, counts, indptr = out
    w = 0
    start = 0
    indptr[0] = 0
    for t in range(len(ends)):
        base = slots[t] * n_features
        for r in range(start, ends[t]):
            if r > start and keys[r] == keys[r - 1]:
                counts[w - 1] += 1
            else:
                columns[w] = keys[r] - base
                counts[w] = 1
                w += 1
        indptr[t + 1] = w
        start = ends[t]


def _code_points_of(texts: list[str]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """The texts' code points, one array, and each text's bounds among them."""
    codes = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    bounds = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)), out=bounds[1:])
    return codes, bounds


class NativePreparation:
    """Whether texts are lower-cased and stripped of accents in the native loop
    (:class:`_CaseMap`) or in Python (:meth:`HashedTokens._prepare`): the same code
    points either way. On by default; a loop that fails to compile or run turns it off
    for the process, counted and said at WARNING once (``trees.fell_back``)."""

    def __init__(self) -> None:
        self.enabled = True

    def fall_back(self, error: Exception) -> None:
        """Prepare in Python from now on, because of ``error``."""
        self.enabled = False
        fell_back("text preparation", error)


native_preparation = NativePreparation()


class _Kernels(NamedTuple):
    code_points: Kernel
    mapped_code_points: Kernel
    mapped_runs: Kernel
    runs: Kernel
    ngrams: Kernel
    keys: Kernel
    tally: Kernel


@functools.cache
def _kernels() -> _Kernels:
    """The native loops, compiled on first use."""
    kernels = (_code_points, _mapped_code_points, _mapped_runs, _runs, _ngrams, _keys, _tally)
    return _Kernels(*(compile_kernel(f) for f in kernels))


@dataclass(frozen=True)
class TokenCounts:
    """Each text's distinct hashed columns, ascending, and how often each occurs.

    Text ``t``'s entries are ``columns[indptr[t]:indptr[t + 1]]``: a CSR matrix's rows.
    """

    indptr: IntArray
    columns: IntArray
    counts: np.ndarray[Any, np.dtype[np.int32]]

    @classmethod
    def join(cls, parts: list[TokenCounts]) -> TokenCounts:
        """The counts of ``parts``' texts, in order, as one."""
        if len(parts) == 1:
            return parts[0]
        offsets = np.cumsum([0] + [len(p.columns) for p in parts[:-1]])
        tails = [p.indptr[1:] + offset for p, offset in zip(parts, offsets, strict=True)]
        indptr = np.concatenate([[0], *tails])
        return cls(
            indptr=indptr.astype(np.int64),
            columns=np.concatenate([p.columns for p in parts]).astype(np.int64),
            counts=np.concatenate([p.counts for p in parts]).astype(np.int32),
        )

    def matrix(self, n_features: int, dtype: Any) -> sp.csr_matrix:
        """The counts as a canonical ``(texts, n_features)`` CSR matrix of ``dtype``."""
        index_dtype = np.int32 if max(len(self.columns), n_features) < 2**31 else np.int64
        matrix = sp.csr_matrix(
            (
                self.counts.astype(dtype),
                self.columns.astype(index_dtype),
                self.indptr.astype(index_dtype),
            ),
            shape=(len(self.indptr) - 1, n_features),
        )
        matrix.has_sorted_indices = True
        matrix.has_canonical_format = True
        return matrix


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
        return self.counts(texts).matrix(self.n_features, self.dtype)

    def counts(self, texts: Iterable[Any]) -> TokenCounts:
        """The token counts of each of ``texts`` (strings), as CSR arrays."""
        self._check_params()
        strings = [str(text) for text in texts]
        return TokenCounts.join([self._count_chunk(chunk) for chunk in self._chunks(strings)])

    def _prepare(self, text: str) -> str:
        if self.lowercase:
            text = text.lower()
        if self.strip_accents and not text.isascii():
            # The combining marks are dropped by the native loop.
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
            size += len(text)
        # No texts at all are one empty chunk.
        if chunk or not texts:
            yield chunk

    def _points(self, texts: list[str]) -> tuple[np.ndarray[Any, Any], ...]:
        """The texts' code points as :meth:`_prepare` leaves them, their classes and each
        text's bounds among them: natively, or, if that fails, prepared in Python."""
        if native_preparation.enabled:
            try:
                mapped = self._mapped_points(texts)
            except Exception as exc:  # noqa: BLE001 - numba failing to compile or run: counted, said
                native_preparation.fall_back(exc)
            else:
                if mapped is not None:
                    return mapped
        return self._prepared_points([self._prepare(text) for text in texts])

    def _mapped_points(self, texts: list[str]) -> tuple[np.ndarray[Any, Any], ...] | None:
        """:meth:`_points` natively, each code point mapped through a :class:`_CaseMap`;
        None when a text holds a capital sigma (lower-cased by its context: the texts
        are prepared in Python)."""
        if self.lowercase and any(not t.isascii() and _CAPITAL_SIGMA in t for t in texts):
            return None
        source = _code_points_of(texts)
        case_map = _case_map(bool(self.lowercase), bool(self.strip_accents))
        collapse = self.analyzer == "char"
        options = (bool(self.strip_accents), collapse)
        capacity = len(source[0]) + (2 * len(texts) if collapse else 0)
        kept = (np.empty(capacity, np.uint32), np.empty(capacity, np.uint8))
        bounds = np.empty_like(source[1])
        unknown = np.empty_like(source[0])
        native = _kernels()
        while True:
            maps = (case_map.entries, case_map.expansion, _classes.table)
            n_unknown, needed = native.mapped_code_points(
                source, maps, options, (*kept, bounds, unknown)
            )
            if n_unknown:
                new = unknown[:n_unknown]
                _classes.learn(new[_classes.table[new] == 0])
                case_map.learn(new)
            elif needed > len(kept[0]):
                kept = (np.empty(needed, np.uint32), np.empty(needed, np.uint8))
            else:
                return (*kept, bounds)

    def _prepared_points(self, texts: list[str]) -> tuple[np.ndarray[Any, Any], ...]:
        """:meth:`_points` of texts :meth:`_prepare` has prepared."""
        codes, bounds = _code_points_of(texts)
        native = _kernels()
        kept = (np.empty_like(codes), np.empty(len(codes), np.uint8), np.empty_like(bounds))
        unknown = np.empty_like(codes)
        drop = bool(self.strip_accents)
        while n_unknown := native.code_points(
            codes, bounds, _classes.table, drop, (*kept, unknown)
        ):
            _classes.learn(unknown[:n_unknown])
        return kept

    def _tokens(self, texts: list[str]) -> tuple[np.ndarray[Any, Any], ...]:
        """Each text's tokens: (polynomials, lengths, where each text's end)."""
        if native_preparation.enabled and self.analyzer != "char":
            try:
                found = self._mapped_runs(texts)
            except Exception as exc:  # noqa: BLE001 - numba failing to compile or run: counted, said
                native_preparation.fall_back(exc)
            else:
                if found is not None:
                    return found
        text, flags, text_bounds = self._points(texts)
        native = _kernels()
        # At most one token starts at each code point (n-grams: one of each length).
        low, high = self.ngram_range
        capacity = int(text_bounds[-1]) * (high - low + 1)
        tokens = (
            np.empty(capacity, np.uint64),
            np.empty(capacity, np.int32),
            np.empty(len(texts), np.int64),
        )
        if self.analyzer == "char":
            native.ngrams(text, text_bounds, (low, high), tokens)
        else:
            native.runs(text, flags, text_bounds, _RULES[self.analyzer], tokens)
        return tokens

    def _mapped_runs(self, texts: list[str]) -> tuple[np.ndarray[Any, Any], ...] | None:
        """:meth:`_tokens` of an analyzer of runs natively, in one pass from the texts'
        code points (:func:`_mapped_runs`); None when a text holds a capital sigma."""
        if self.lowercase and any(not t.isascii() and _CAPITAL_SIGMA in t for t in texts):
            return None
        source = _code_points_of(texts)
        case_map = _case_map(bool(self.lowercase), bool(self.strip_accents))
        rule = (bool(self.strip_accents), *_RULES[self.analyzer])
        # At most one token a code point, and mapping rarely makes more code points.
        capacity = len(source[0]) + 1
        tokens = (np.empty(capacity, np.uint64), np.empty(capacity, np.int32))
        ends = np.empty(len(texts), np.int64)
        unknown = np.empty_like(source[0])
        native = _kernels()
        while True:
            maps = (case_map.entries, case_map.expansion, _classes.table)
            n_unknown, needed = native.mapped_runs(source, maps, rule, (*tokens, ends, unknown))
            if n_unknown:
                new = unknown[:n_unknown]
                _classes.learn(new[_classes.table[new] == 0])
                case_map.learn(new)
            elif needed > len(tokens[0]):
                tokens = (np.empty(needed, np.uint64), np.empty(needed, np.int32))
            else:
                return (*tokens, ends)

    def _count_chunk(self, texts: list[str]) -> TokenCounts:
        tokens = self._tokens(texts)
        native = _kernels()
        ends = tokens[2]
        n_tokens = int(ends[-1]) if len(ends) else 0
        # Keys of (text in its group, column), 32-bit when a group of texts fits: numpy
        # sorts those twice as fast as 64-bit ones, and five times as fast as numba.
        # Groups of a few thousand keys sort in the cache: a batch's 38,000 keys of
        # character n-grams sorted at once took 20 ns a key, in groups 5 or 6.
        wide = self.n_features > 2**30
        layout = ((2**63 if wide else 2**31) // self.n_features, self.n_features, SORT_KEYS)
        keys = np.empty(n_tokens, dtype=np.int64 if wide else np.int32)
        slots = np.empty(len(texts), np.int64)
        group_ends = np.empty(len(texts) + 1, np.int64)
        n_groups = native.keys(*tokens, layout, (keys, slots, group_ends))
        for begin, end in itertools.pairwise([0, *group_ends[:n_groups].tolist()]):
            keys[begin:end].sort()
        counts = (
            np.empty(n_tokens, np.int64),
            np.empty(n_tokens, np.int32),
            np.empty(len(texts) + 1, np.int64),
        )
        native.tally(keys, ends, slots, self.n_features, counts)
        nnz = int(counts[2][-1])
        return TokenCounts(indptr=counts[2], columns=counts[0][:nnz], counts=counts[1][:nnz])
