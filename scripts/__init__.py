"""Benchmarks and fault-injection runs (``scripts/bench``, ``scripts/faults``).

A package so that the harness's modules import one another as ``scripts.bench_*`` and
the unit tests in ``tests/bench`` can import the pure helpers; run from the repository
root (``python -m scripts.bench``), never installed.
"""
