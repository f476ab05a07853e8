"""A merge job's states (docs/DESIGN.md, "Firestore layout": ``merge_jobs/{job_id}``). Pure.

The job itself stays a dict (the worker reads only a few of its fields, with a field mask); these
are the values of its ``status`` and of each ``types.<Type>.status``. Being ``StrEnum``s they equal,
and are stored as, the plain strings."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    RUNNING = "running"
    FINALISING = "finalising"
    DONE = "done"
    FAILED = "failed"
    UNMERGED = "unmerged"


class TaskStatus(StrEnum):
    PENDING = "pending"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"


# A task still to run (a failed one runs again when its message is redelivered).
OPEN_TASK_STATES = frozenset({TaskStatus.PENDING, TaskStatus.FAILED})
# A task the finaliser needs no more from.
CLOSED_TASK_STATES = frozenset({TaskStatus.DONE, TaskStatus.SKIPPED})


def remaining_tasks(job: dict) -> int:
    return sum(1 for t in (job.get("types") or {}).values() if t.get("status") in OPEN_TASK_STATES)
