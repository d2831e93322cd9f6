"""Fault injection: ``scripts/faults`` (``python -m bench.faults``)."""
