"""Native loops for scoring: plain Python functions that numba compiles on first use.

numba is imported only when a kernel is first needed, so processes that never score
(the CLI's other commands, a producer) do not pay its second of import and its memory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

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
