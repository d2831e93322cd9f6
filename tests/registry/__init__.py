"""Tests of the model registry (``inferloop.registry``), against the session's real Redis."""
