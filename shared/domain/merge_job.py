"""A merge job's states (docs/DESIGN.md, "Firestore layout": ``merge_jobs/{job_id}``). Pure.

The job itself stays a dict (the worker reads only a few of its fields, with a field mask); these
are the values of its ``status`` and of each ``types.<Type>.status``. Being ``StrEnum``s they equal,
and are stored as, the plain strings."""

from __future__ import annotations

from datetime import datetime
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


# A finalise claim older than this whose holder never published (or whose finaliser never started) is
# taken over: its holder died between claiming and publishing.
STALE_FINALISE_CLAIM_SECONDS = 60
# The job fields the claim rule reads.
CLAIM_FIELDS = ("status", "remaining", "finalise_published", "finalise_started_at")


def finalise_claimable(job: dict | None) -> bool:
    """Whether the finalise outbox may be claimed for ``job`` now (every task done): a running job not
    yet claimed, or a finalising one whose finaliser never started (its claim holder may have died
    before publishing; the claim's age decides, see ``claim_is_stale``)."""
    if job is None or job.get("remaining"):
        return False
    if job.get("status") == JobStatus.RUNNING:
        return not job.get("finalise_published")
    return job.get("status") == JobStatus.FINALISING and bool(job.get("finalise_published")) \
        and not job.get("finalise_started_at")


def claim_is_stale(held: dict, now: datetime) -> bool:
    claimed_at = held.get("claimed_at")
    return not claimed_at or (now - datetime.fromisoformat(claimed_at)).total_seconds() >= STALE_FINALISE_CLAIM_SECONDS
