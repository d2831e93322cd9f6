"""Monitor settings at start (no services)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from inferloop.monitor.service import Monitor
from inferloop.settings import MonitorSettings, Settings


def test_implicit_negatives_are_accepted_and_must_be_positive() -> None:
    settings = Settings(monitor=MonitorSettings(transactions_implicit_negative_after_s=86_400))
    Monitor(settings, "transactions")  # built since 46e0bd4: no longer refused at start
    Monitor(settings, "emails")  # the other domain's is off
    with pytest.raises(ValidationError):
        MonitorSettings(transactions_implicit_negative_after_s=0)
