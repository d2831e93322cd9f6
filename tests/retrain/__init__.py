"""Tests of the retraining job and its service (``inferloop.retrain``), against real services."""
