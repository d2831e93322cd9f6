"""A retrain's fit as background load: ``python -m bench.fitload SECONDS``.

Fits the transactions pipeline on the first 100,000 credit-card rows again and again,
the way the retrain job does (one native thread, at a lower CPU priority), until
``SECONDS`` have passed; the latency section runs a worker beside it.
"""

from __future__ import annotations

import logging
import sys
import time

import numpy as np

from inferloop.domains import get_domain, training
from inferloop.domains.datasets import load_dataset
from inferloop.retrain.recipe import fit_resources
from inferloop.settings import RetrainSettings, Settings

ROWS = 100_000


def main(seconds: float) -> int:
    """Fit until ``seconds`` have passed; the number of fits finished."""
    logging.basicConfig(level=logging.WARNING)
    settings = Settings()
    retrain = RetrainSettings()
    spec = get_domain("transactions")
    data = load_dataset("creditcard", settings.data_dir).subset(np.arange(ROWS))
    rows = spec.to_rows(data.events)
    print("fitting", flush=True)  # the parent starts its load now
    deadline = time.monotonic() + seconds
    fits = 0
    while time.monotonic() < deadline:
        with fit_resources(retrain.fit_threads, retrain.fit_nice):
            training.fit(spec, rows, data.y, folds=retrain.folds)
        fits += 1
    return fits


if __name__ == "__main__":
    print(f"fits {main(float(sys.argv[1]))}", flush=True)
