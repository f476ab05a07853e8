"""Merge jobs and their journal in Firestore (docs/DESIGN.md, "Firestore layout").

- ``merge_jobs/{job_id}`` (job_id = request_id): the request, the per-type task states, the outbox
  flag ``finalise_published`` and the job status. Hot paths (many tasks ending together) avoid
  transactions on it: they use atomic creates of subcollection documents plus increments.
- ``merge_jobs/{job_id}/tasks/{Type}``: a finished task's result; its existence is what makes
  ``remaining`` count each type once. ``tasks/_finalise`` is the claim of the finalise outbox.
- ``merge_jobs/{job_id}/journal/{Type}__{id}``: one entry per resource the merge wrote, with the
  version before and after, so an unmerge can put back exactly what was there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from google.api_core.exceptions import AlreadyExists
from google.cloud import firestore

from shared.adapters.firestore import BATCH_LIMIT, TRANSACTION_ATTEMPTS
from shared.clock import now_iso
from shared.config import Settings
from shared.domain.merge_job import (
    CLAIM_FIELDS,
    JobStatus,
    TaskStatus,
    claim_is_stale,
    finalise_claimable,
    remaining_tasks,
)
from shared.ports.merge_jobs import MergeJobsRepository

FINALISE_MARKER = "_finalise"


def journal_key(resource_type: str, resource_id: str) -> str:
    return f"{resource_type}__{resource_id}"


# Composite indexes of these queries in production (infra/modules/district/firestore_indexes.tf).
MERGE_JOB_INDEXES = {"merge_jobs": [(("status", "ASCENDING"), ("created_at", "DESCENDING"))]}


class MergeJobs(MergeJobsRepository):
    def __init__(self, db: firestore.Client, settings: Settings):
        self._db = db
        self._jobs = db.collection(settings.collection("merge_jobs"))

    # --- the job document -------------------------------------------------------------------
    def _ref(self, job_id: str):
        return self._jobs.document(job_id)

    def get(self, job_id: str, fields: Iterable[str] | None = None) -> dict | None:
        """The job document, or only ``fields`` (dotted paths): a task needs its own type's entry,
        not all ~60, and decoding the whole document was a third of a worker's CPU time."""
        snapshot = self._ref(job_id).get(field_paths=list(fields) if fields is not None else None)
        return snapshot.to_dict() if snapshot.exists else None

    def all(self) -> list[dict]:
        """Every merge job (reports)."""
        return [snapshot.to_dict() for snapshot in self._jobs.stream()]

    def for_group(self, group: str) -> list[dict]:
        query = self._jobs.where(filter=firestore.FieldFilter("group", "==", group))
        return sorted((snapshot.to_dict() for snapshot in query.stream()), key=lambda job: job.get("created_at") or "")

    def recent(self, *, status: str | None = None, limit: int = 100) -> list[dict]:
        # Index (status, created_at DESC): MERGE_JOB_INDEXES, declared in infra/.
        query = self._jobs
        if status:
            query = query.where(filter=firestore.FieldFilter("status", "==", status))
        query = query.order_by("created_at", direction=firestore.Query.DESCENDING).limit(limit)
        return [snapshot.to_dict() for snapshot in query.stream()]

    def finished(self) -> list[dict]:
        """Every merge that completed (status ``done``; unmerged ones are not)."""
        query = self._jobs.where(filter=firestore.FieldFilter("status", "==", JobStatus.DONE.value))
        return [snapshot.to_dict() for snapshot in query.stream()]

    def with_status(self, statuses: Iterable[str]) -> list[dict]:
        query = self._jobs.where(filter=firestore.FieldFilter("status", "in", [str(s) for s in statuses]))
        return [snapshot.to_dict() for snapshot in query.stream()]

    def with_duplicate(self, patient_id: str) -> list[dict]:
        query = self._jobs.where(filter=firestore.FieldFilter("duplicates", "array_contains", patient_id))
        return [snapshot.to_dict() for snapshot in query.stream()]

    def _transact(self, job_id: str, change: Callable[[dict | None], tuple[dict | None, Any]]) -> Any:
        """Runs ``change(current doc) -> (doc to write or None, result)`` in one transaction."""
        ref = self._ref(job_id)

        @firestore.transactional
        def run(transaction):
            snapshot = ref.get(transaction=transaction)
            new_doc, result = change(snapshot.to_dict() if snapshot.exists else None)
            if new_doc is not None:
                transaction.set(ref, new_doc)
            return result

        return run(self._db.transaction(max_attempts=TRANSACTION_ATTEMPTS))

    def create(self, job: dict) -> tuple[dict, bool]:
        """Stores ``job`` unless a job with its id exists; returns (the stored job, created?)."""

        def change(current):
            if current is not None:
                return None, (current, False)
            doc = {**job, "remaining": remaining_tasks(job), "finalise_published": False,
                   "created_at": now_iso(), "updated_at": now_iso()}
            return doc, (doc, True)

        return self._transact(job["job_id"], change)

    def record_task(self, job_id: str, resource_type: str, result: dict, *, previous: dict | None = None,
                    journal_done: list[dict] = ()) -> int | None:
        """Records one task's result, and the task's completed journal entries with it. Returns the
        job's ``remaining`` count afterwards (None if unknown: a failure, or a duplicate delivery).

        A finished task is counted without a transaction on the (hot) job document: one atomic
        batch creates ``tasks/{Type}`` -- which fails if a duplicate delivery already counted it --
        and decrements ``remaining``; the commit's transform result is the new count, so no read
        follows. Counters add to ``previous`` (the task's entry as read before it ran: what failed
        attempts counted). Dozens of tasks finishing together then do not contend for the job
        document's lock. A failure is recorded in a transaction that never overwrites a type
        already done.
        """
        ref = self._ref(job_id)
        counters = {k: result.get(k, 0) for k in ("rewritten", "found", "conflicts")}
        journal_done = list(journal_done)
        if result["status"] != TaskStatus.DONE or len(journal_done) > BATCH_LIMIT - 2:
            self.journal_put(job_id, journal_done, merge=True)
            journal_done = []
        if result["status"] == TaskStatus.DONE:
            batch = self._db.batch()
            for entry in journal_done:   # in the same commit: one write instead of two per task
                batch.set(self._journal(job_id).document(journal_key(entry["resource_type"], entry["id"])),
                          entry, merge=True)
            batch.create(ref.collection("tasks").document(resource_type),
                         {**result, "resource_type": resource_type, "recorded_at": now_iso()})
            fields = {f"types.{resource_type}.{k}": (previous or {}).get(k, 0) + v for k, v in counters.items()}
            fields.update({f"types.{resource_type}.{k}": v for k, v in result.items() if k not in counters})
            # The only transform in the write, so its result is the new count.
            fields.update({"remaining": firestore.Increment(-1), "updated_at": now_iso()})
            batch.update(ref, fields)
            try:
                write_results = batch.commit()
            except AlreadyExists:
                # A duplicate delivery, counted once already; what this one wrote is still journaled.
                self.journal_put(job_id, journal_done, merge=True)
                return None
            transforms = list(write_results[-1].transform_results)
            return transforms[0].integer_value if len(transforms) == 1 else None

        def change(current):
            if current is None:
                raise KeyError(f"merge job {job_id} not found")
            task = current["types"].setdefault(resource_type, {})
            if task.get("status") == TaskStatus.DONE:
                return None, None
            for k, v in counters.items():
                task[k] = task.get(k, 0) + v
            task.update({k: v for k, v in result.items() if k not in counters})
            current["updated_at"] = now_iso()
            return current, None

        return self._transact(job_id, change)

    def claim_finalise(self, job_id: str) -> bool:
        """Outbox: True for exactly one caller once every task is done; that caller publishes the
        finalise message (and calls ``release_finalise`` if publishing fails).

        The claim is the atomic create of ``tasks/_finalise`` (names of resource types start with a
        capital, so it cannot clash): like the task counting, no transaction on the hot job document,
        which the emulator and Firestore both serialise badly when many tasks end together. A claim
        whose holder died before publishing (the finaliser never started) is taken over after a minute
        (``shared.domain.merge_job.finalise_claimable`` / ``claim_is_stale``).
        """
        if not finalise_claimable(self.get(job_id, CLAIM_FIELDS)):
            return False
        marker = self._ref(job_id).collection("tasks").document(FINALISE_MARKER)
        try:
            marker.create({"claimed_at": now_iso()})
        except AlreadyExists:
            if not claim_is_stale(marker.get().to_dict() or {}, datetime.now(UTC)):
                return False
            marker.set({"claimed_at": now_iso(), "taken_over": True})
        self._ref(job_id).update({"finalise_published": True, "status": JobStatus.FINALISING.value,
                                  "updated_at": now_iso()})
        return True

    def release_finalise(self, job_id: str) -> None:
        self._ref(job_id).update({"finalise_published": False, "status": JobStatus.RUNNING.value,
                                  "updated_at": now_iso()})
        self._ref(job_id).collection("tasks").document(FINALISE_MARKER).delete()

    def update(self, job_id: str, **fields: Any) -> None:
        self._ref(job_id).update({**fields, "updated_at": now_iso()})

    # --- the journal ----------------------------------------------------------------------------
    def _journal(self, job_id: str):
        return self._ref(job_id).collection("journal")

    def journal_put(self, job_id: str, entries: Iterable[dict], *, merge: bool = False) -> None:
        """Writes entries (each with ``resource_type`` and ``id``) in batched writes."""
        entries = list(entries)
        for start in range(0, len(entries), BATCH_LIMIT):
            batch = self._db.batch()
            for entry in entries[start:start + BATCH_LIMIT]:
                ref = self._journal(job_id).document(journal_key(entry["resource_type"], entry["id"]))
                batch.set(ref, entry, merge=merge)
            batch.commit()

    def journal_entries(self, job_id: str, kind: str | None = None) -> list[dict]:
        """The job's journal; ``kind`` ("patient" or "reference") keeps only those entries."""
        query = self._journal(job_id)
        if kind is not None:
            query = query.where(filter=firestore.FieldFilter("kind", "==", kind))
        return [snapshot.to_dict() for snapshot in query.stream()]
