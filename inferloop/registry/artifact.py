"""Artifact bytes: a fitted pipeline as compressed joblib bytes, and back.

``unpickle`` runs code from the bytes it is given: call it only on bytes whose digest
and signature were checked (``Registry.load`` does, before it calls it).
"""

from __future__ import annotations

import gc
import hashlib
import io
import sys
import zlib
from types import BuiltinFunctionType, FunctionType, ModuleType
from typing import Any

import joblib
import numpy as np

from inferloop.registry.errors import IntegrityError

COMPRESSION = "zlib"
# Level 3 compresses fitted scikit-learn pipelines almost as well as level 9, several
# times faster; decompression speed is the same at every level.
_ZLIB_LEVEL = 3


def dump(pipeline: Any) -> bytes:
    """The compressed joblib bytes of ``pipeline``."""
    buffer = io.BytesIO()
    joblib.dump(pipeline, buffer)
    return zlib.compress(buffer.getvalue(), _ZLIB_LEVEL)


def digest(data: bytes) -> str:
    """The artifact digest: SHA-256 as 64 hex digits."""
    return hashlib.sha256(data).hexdigest()


def unpickle(data: bytes, compression: str) -> Any:
    """The object in verified artifact bytes (this runs the pickle's code)."""
    if compression != COMPRESSION:
        raise IntegrityError(f"unknown artifact compression {compression!r}")
    return joblib.load(io.BytesIO(zlib.decompress(data)))


_SKIPPED = (type, ModuleType, FunctionType, BuiltinFunctionType)


def deep_size_bytes(obj: Any) -> int:
    """Bytes held by ``obj`` and everything it references (numpy buffers included),
    each object counted once; classes, modules and functions are shared, not counted."""
    seen: set[int] = set()
    stack = [obj]
    total = 0
    while stack:
        item = stack.pop()
        if id(item) in seen or isinstance(item, _SKIPPED):
            continue
        seen.add(id(item))
        total += sys.getsizeof(item)
        stack.extend(_referents(item))
    return total


def _referents(item: Any) -> list[Any]:
    # numpy arrays are not tracked by the garbage collector: a view's buffer is its base
    # (joblib loads arrays as views of one buffer), an object array's items are its own.
    if isinstance(item, np.ndarray):
        inner: list[Any] = [] if item.base is None else [item.base]
        if item.dtype == object:
            inner.extend(item.ravel().tolist())
        return inner
    return gc.get_referents(item)
