"""The two domains, emails (spam) and transactions (fraud): schemas and models.

``get_domain("emails")`` and ``get_domain("transactions")`` return the
:class:`DomainSpec` that the worker and the retraining job share: validation, rows,
pipeline, threshold and metrics.
"""

from __future__ import annotations

from functools import cache

from inferloop.domains.emails import EmailsDomain
from inferloop.domains.errors import (
    DatasetFormatError,
    DatasetNotFoundError,
    DomainError,
    TrainingError,
    UnknownDomainError,
)
from inferloop.domains.spec import DomainSpec
from inferloop.domains.transactions import TransactionsDomain
from inferloop.settings import DOMAINS

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

_SPECS: dict[str, type[DomainSpec]] = {"emails": EmailsDomain, "transactions": TransactionsDomain}


@cache
def get_domain(name: str) -> DomainSpec:
    """The spec of domain ``name`` ("emails" or "transactions"); one instance per name."""
    try:
        return _SPECS[name]()
    except KeyError:
        raise UnknownDomainError(
            f"unknown domain {name!r}; expected one of {', '.join(DOMAINS)}"
        ) from None
