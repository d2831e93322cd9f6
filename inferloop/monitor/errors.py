"""Errors of the monitor."""

from __future__ import annotations

from inferloop.errors import InferloopError


class MonitorError(InferloopError): ...


class LeaseHeldError(MonitorError): ...


class LeaseLostError(MonitorError): ...


class NoStatusError(MonitorError): ...
