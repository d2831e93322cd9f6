"""Page-Hinkley: quiet on a stationary stream, quick on a shift, resumable from its state."""

from __future__ import annotations

import json

import numpy as np
import pytest

from inferloop.monitor.drift import DEFAULTS, DriftConfig, PageHinkley, detector

CONFIG = DriftConfig(delta=0.05, threshold=20.0, min_samples=200)


def _alarms(ph: PageHinkley, values: np.ndarray) -> list[int]:
    return [i for i, x in enumerate(values.tolist()) if ph.update(x)]


def test_a_stationary_stream_raises_no_alarm_and_a_shift_one_soon() -> None:
    rng = np.random.default_rng(0)
    stationary = rng.normal(0.3, 0.2, 50_000)
    shifted = rng.normal(0.6, 0.2, 2_000)
    found = _alarms(PageHinkley(CONFIG), np.r_[stationary, shifted])
    assert found
    assert found[0] >= 50_000  # nothing before the shift
    assert found[0] - 50_000 < 200  # 0.3 up in the mean: found within 200 events


def test_the_error_stream_alarms_on_more_errors_only() -> None:
    rng = np.random.default_rng(1)
    config = DriftConfig(delta=0.05, threshold=25.0, min_samples=500, direction="up")
    fewer = np.r_[rng.random(5_000) < 0.2, rng.random(5_000) < 0.02].astype(float)
    more = np.r_[rng.random(5_000) < 0.02, rng.random(5_000) < 0.2].astype(float)
    assert _alarms(PageHinkley(config), fewer) == []
    assert _alarms(PageHinkley(config), more)


def test_an_alarm_restarts_the_detector() -> None:
    ph = PageHinkley(DriftConfig(delta=0.0, threshold=1.0, min_samples=1))
    ph.update(0.0)
    assert ph.update(5.0)
    assert (ph.n, ph.up, ph.down, ph.alarms) == (0, 0.0, 0.0, 1)


def test_a_detector_resumes_from_its_stored_state() -> None:
    rng = np.random.default_rng(2)
    values = np.r_[rng.normal(0, 1, 3_000), rng.normal(0.8, 1, 3_000)]
    whole = PageHinkley(CONFIG)
    expected = _alarms(whole, values)
    first = PageHinkley(CONFIG)
    head = _alarms(first, values[:4_000])
    resumed = PageHinkley.from_state(json.loads(json.dumps(first.to_state())))
    tail = [i + 4_000 for i in _alarms(resumed, values[4_000:])]
    assert head + tail == expected
    assert resumed.to_state() == whole.to_state()


def test_every_domain_and_stream_has_tuned_defaults() -> None:
    for domain in ("emails", "transactions"):
        for kind in ("score", "error"):
            assert detector(domain, kind).config == DEFAULTS[(domain, kind)]


def test_a_tuning_that_cannot_work_is_refused() -> None:
    with pytest.raises(ValueError, match="Page-Hinkley"):
        DriftConfig(delta=0.1, threshold=0.0)
