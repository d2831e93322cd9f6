"""The two domains, emails (spam) and transactions (fraud): schemas and models.

``get_domain("emails")`` and ``get_domain("transactions")`` return the
:class:`DomainSpec` that the worker and the retraining job share: validation, rows,
pipeline, threshold and metrics.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import TYPE_CHECKING, Any

from inferloop.domains.errors import (
    DatasetFormatError,
    DatasetNotFoundError,
    DomainError,
    TrainingError,
    UnknownDomainError,
)
from inferloop.settings import DOMAINS

if TYPE_CHECKING:
    from inferloop.domains.emails import EmailsDomain
    from inferloop.domains.spec import DomainSpec
    from inferloop.domains.transactions import TransactionsDomain

__all__ = [
    "DatasetFormatError",
    "DatasetNotFoundError",
    "DomainError",
    "DomainSpec",
    "EmailsDomain",
    "TrainingError",
    "TransactionsDomain",
    "UnknownDomainError",
    "get_domain",
]

# Imported on first use: the specs pull in scikit-learn, which costs seconds that a CLI
# command or a schema check need not pay.
_LAZY = {
    "DomainSpec": "inferloop.domains.spec",
    "EmailsDomain": "inferloop.domains.emails",
    "TransactionsDomain": "inferloop.domains.transactions",
}
_SPECS = {"emails": "EmailsDomain", "transactions": "TransactionsDomain"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@cache
def get_domain(name: str) -> DomainSpec:
    """The spec of domain ``name`` ("emails" or "transactions"); one instance per name."""
    if name not in _SPECS:
        raise UnknownDomainError(f"unknown domain {name!r}; expected one of {', '.join(DOMAINS)}")
    spec_class: type[DomainSpec] = __getattr__(_SPECS[name])
    return spec_class()
