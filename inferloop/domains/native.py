"""Native loops for scoring: plain Python functions that numba compiles on first use.

numba is imported only when a kernel is first needed, so processes that never score
(the CLI's other commands, a producer) do not pay its second of import and its memory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from inferloop.domains.errors import NotCompilableError

log = logging.getLogger(__name__)

Kernel = Callable[..., Any]


def compile_kernel(function: Callable[..., Any]) -> Kernel:
    """``function`` compiled to machine code (numba, no GIL held while it runs).

    The machine code is cached beside the function's module when that folder is
    writable, so only the first process on a machine pays the seconds of compiling.
    Callers memoise the result (``functools.cache``): this compiles a new dispatcher.
    """
    import numba  # noqa: PLC0415 - a second's import that only scoring needs

    try:
        kernel: Kernel = numba.njit(cache=True, nogil=True)(function)
    except RuntimeError:  # no writable cache location: compile in each process
        log.info("numba cannot cache here; %s compiles in each process", function.__name__)
        kernel = numba.njit(nogil=True)(function)
    return kernel


def check_same_scores(
    compiled: Callable[[Any], Any], reference: Any, rows: Any, *, kernel: str, source: str
) -> None:
    """Raise :class:`NotCompilableError` unless ``compiled(rows)`` is exactly
    ``reference.predict_proba(rows)[:, 1]``, or if ``compiled`` fails to run.

    ``kernel`` and ``source`` name the two sides in the error ("the tree kernel", "the
    model's").
    """
    want = np.asarray(reference.predict_proba(rows)[:, 1], dtype=np.float64)
    try:
        got = compiled(rows)
    except Exception as exc:
        raise NotCompilableError(f"{kernel} failed: {exc!r}") from exc
    if not np.array_equal(got, want):
        worst = float(np.max(np.abs(got - want)))
        raise NotCompilableError(f"compiled scores differ from {source} by {worst:g}")
