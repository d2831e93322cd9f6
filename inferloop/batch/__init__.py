"""Batch inference: score a file of events or a range of a topic with one model version.

What the worker does to a stream, ``inferloop score`` does to data at rest, with the same
parts: the version is loaded through the registry (signature and digest) and made ready
by ``registry.serving.activate`` (golden scores, fastest compiled scorer), events are
validated by the domain's ``validate_batch`` (rejects carry the worker's dead-letter
reasons), scored in chunks with the worker's failure isolation, and encoded by the
worker's own prediction encoder. Input is read and output written chunk by chunk, so
memory does not grow with the input's size.
"""

from __future__ import annotations

from inferloop.batch.errors import BatchError, InputError, TopicRangeError
from inferloop.batch.run import BatchRun, Summary, load_model

__all__ = ["BatchError", "BatchRun", "InputError", "Summary", "TopicRangeError", "load_model"]
