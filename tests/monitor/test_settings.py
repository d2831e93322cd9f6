"""Monitor settings the runtime refuses rather than ignores (no services)."""

from __future__ import annotations

import pytest

from inferloop.errors import ConfigError
from inferloop.monitor.service import Monitor
from inferloop.settings import MonitorSettings, Settings


def test_implicit_negatives_are_refused_until_they_are_built() -> None:
    settings = Settings(monitor=MonitorSettings(transactions_implicit_negative_after_s=86_400))
    with pytest.raises(ConfigError, match="IMPLICIT_NEGATIVE_AFTER_S"):
        Monitor(settings, "transactions")
    Monitor(settings, "emails")  # the other domain's is off
