"""The scheduled retraining job and its service.

``RetrainJob(settings, registry).run(RunRequest("emails"))`` runs one retrain under
the domain's lease; ``RetrainService(settings, registry).run()`` serves each domain's
schedule and the operator triggers; ``rebuild`` refits a version from its lineage.
"""

from inferloop.retrain.errors import (
    CancelledError,
    LockHeldError,
    NotEnoughDataError,
    RebuildError,
    RebuildMismatchError,
    RetrainError,
    RetrainPermissionError,
    ScheduleError,
    SnapshotError,
    TriggerError,
    TriggerTimeoutError,
)
from inferloop.retrain.job import RetrainJob, RunRequest
from inferloop.retrain.lock import Lease, LeaseLock
from inferloop.retrain.outcome import OUTCOMES, RunOutcome
from inferloop.retrain.rebuild import RebuildResult, rebuild
from inferloop.retrain.service import RetrainService, ServiceReport
from inferloop.retrain.triggers import Trigger, TriggerQueue

__all__ = [
    "OUTCOMES",
    "CancelledError",
    "Lease",
    "LeaseLock",
    "LockHeldError",
    "NotEnoughDataError",
    "RebuildError",
    "RebuildMismatchError",
    "RebuildResult",
    "RetrainError",
    "RetrainJob",
    "RetrainPermissionError",
    "RetrainService",
    "RunOutcome",
    "RunRequest",
    "ScheduleError",
    "ServiceReport",
    "SnapshotError",
    "Trigger",
    "TriggerError",
    "TriggerQueue",
    "TriggerTimeoutError",
    "rebuild",
]
