"""In-memory fakes of every port, for fast orchestration tests (the emulators and the real FHIR server
stay for tests/integration).

Each fake keeps the semantics its production adapter has and the services rely on:

- ``InMemoryGroups`` (``FirestoreGroups``): a transaction loads a deep copy of the group, runs the use
  case's function, writes the group back only when ``to_doc()`` changed (stamping ``updated_at``) and
  creates the proposed review items that do not exist yet, all at once; transactions over one group
  serialise on a lock. ``fail_next`` makes attempts fail (aborted and retried, or raised).
- ``InMemoryPatientKeys`` / ``InMemoryReviewItems`` / ``InMemoryBackfillRuns``: documents stored in
  their ``to_doc()`` form, so a test sees exactly what Firestore would hold.
- ``InMemoryMergeJobs`` (``MergeJobs``): jobs, their task records and journal; see its docstring.
- ``RecordingPublisher`` (``Publisher``): records what was published, as JSON would carry it;
  ``fail_next`` makes publishes raise.
- ``InMemoryFhir`` (``FhirClient``): a small FHIR R4 server, see its docstring.
- ``InMemoryModelStore`` (``GcsModelStore``, ``FileModelStore``): model versions written once, the current
  model's pointer moved by compare-and-set.
"""

from __future__ import annotations

import copy
import itertools
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

from shared.adapters.merge_jobs import FINALISE_MARKER, journal_key
from shared.adapters.review_transaction import ReviewingTransaction
from shared.clock import now_iso
from shared.domain.audit import AuditEntry
from shared.domain.backfill import BackfillProgress
from shared.domain.group import Group
from shared.domain.merge_job import JobStatus, TaskStatus, claim_is_stale, finalise_claimable, remaining_tasks
from shared.domain.patient_keys import PatientKeys
from shared.domain.review import (
    QueueCounts,
    QueueFilter,
    QueuePage,
    ReviewItem,
    ReviewStatus,
    count_pending,
    in_queue,
    queue_order,
    queue_page,
)
from shared.fhir.compartment import patient_compartment
from shared.fhir.errors import EntryOutcome, FhirError, Gone, NotFound, PreconditionFailed
from shared.fhir.references import patient_references
from shared.fhir.wire import next_link_path
from shared.ports.audit import AuditLog
from shared.ports.backfill_runs import BackfillRunRepository
from shared.ports.fhir import FhirPort, Params
from shared.ports.index import GroupRepository, GroupTransaction, PatientKeyRepository, ReviewItemRepository
from shared.ports.merge_jobs import MergeJobsRepository
from shared.ports.messaging import MessagePublisher
from shared.ports.model_store import (
    CurrentModel,
    CurrentModelMoved,
    ModelStore,
    ModelVersionExists,
    ModelVersionNotFound,
    check_version_name,
)
from shared.ports.upkeep import UpkeepMarks

T = TypeVar("T")


class TransactionAborted(RuntimeError):
    """A group transaction that failed every attempt (Firestore's ``Aborted`` after the retries)."""


# --- the matching index ------------------------------------------------------------------------------


class InMemoryReviewItems(ReviewItemRepository):
    def __init__(self) -> None:
        self.docs: dict[str, dict] = {}
        self._lock = threading.Lock()

    def get(self, item_id: str) -> ReviewItem | None:
        with self._lock:
            doc = self.docs.get(item_id)
            return ReviewItem.from_doc(item_id, copy.deepcopy(doc)) if doc is not None else None

    def _items(self) -> list[ReviewItem]:
        with self._lock:
            return [ReviewItem.from_doc(i, copy.deepcopy(d)) for i, d in self.docs.items()]

    def pending(self, reason: str | None = None, limit: int = 200) -> list[ReviewItem]:
        return self.with_status(ReviewStatus.PENDING, reason, limit)

    def with_status(self, status: ReviewStatus, reason: str | None = None, limit: int = 200) -> list[ReviewItem]:
        return in_queue(self._items(), status, reason=reason)[:limit]

    def get_many(self, item_ids: list[str]) -> list[ReviewItem]:
        return [item for item in map(self.get, item_ids) if item is not None]

    def page(self, queue: QueueFilter, *, after: str | None = None, size: int = 50, now: str) -> QueuePage:
        return queue_page(self._items(), queue, after=self.get(after) if after else None, size=size, now=now)

    def counts(self, *, reasons: list[str], sources: list[str], now: str) -> QueueCounts:
        return count_pending(in_queue(self._items()), reasons=reasons, sources=sources, now=now)

    def reopen(self, item_id: str, expected: ReviewStatus) -> bool:
        with self._lock:
            doc = self.docs.get(item_id)
            if doc is None or doc.get("status") != expected:
                return False
            item = ReviewItem.from_doc(item_id, doc)
            item.undo_decision()
            self.docs[item_id] = item.to_doc()
            return True

    def record_skip(self, item_id: str) -> None:
        with self._lock:
            self.docs[item_id]["skips"] = int(self.docs[item_id].get("skips") or 0) + 1

    def for_group(self, group: str) -> list[ReviewItem]:
        with self._lock:
            items = [ReviewItem.from_doc(i, copy.deepcopy(d)) for i, d in self.docs.items() if d.get("group") == group]
        return sorted(items, key=queue_order)

    def decide(self, item_id: str, status: ReviewStatus, decision: dict) -> None:
        with self._lock:
            if item_id not in self.docs:  # Firestore's update() of a missing document fails too
                raise LookupError(f"no review item {item_id}")
            self.docs[item_id].update({"status": str(status), **copy.deepcopy(decision)})

    def all(self) -> Iterator[ReviewItem]:
        with self._lock:
            snapshot = copy.deepcopy(self.docs)
        for item_id, doc in sorted(snapshot.items()):
            yield ReviewItem.from_doc(item_id, doc)

    def _create_absent(self, items: Sequence[ReviewItem]) -> None:
        with self._lock:
            for item in items:
                self.docs.setdefault(item.id, copy.deepcopy(item.to_doc()))

    def _put(self, items: Sequence[ReviewItem]) -> None:
        with self._lock:
            for item in items:
                self.docs[item.id] = copy.deepcopy(item.to_doc())


class InMemoryGroups(GroupRepository):
    """Groups by id (``nik_index/<token>``), stored as their ``to_doc()``."""

    def __init__(self, reviews: InMemoryReviewItems | None = None, attempts: int = 5):
        self.reviews = reviews if reviews is not None else InMemoryReviewItems()
        self.docs: dict[str, dict] = {}
        self.writes: Counter = Counter()      # group id -> documents written
        self.attempts: Counter = Counter()    # group id -> transaction attempts (``change`` calls)
        self._attempt_limit = attempts
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        self._failures: list[tuple[str | None, BaseException | None]] = []

    def fail_next(self, times: int = 1, *, group_id: str | None = None, error: BaseException | None = None) -> None:
        """The next ``times`` attempts (of ``group_id``, or of any group) run ``change`` and then fail,
        writing nothing. Without ``error`` the attempt aborts as on contention and ``transact``
        retries it (``TransactionAborted`` after ``attempts`` tries); with ``error``, it is raised."""
        with self._locks_lock:
            self._failures.extend([(group_id, error)] * times)

    def _take_failure(self, group_id: str) -> tuple[bool, BaseException | None]:
        with self._locks_lock:
            for index, (target, error) in enumerate(self._failures):
                if target is None or target == group_id:
                    del self._failures[index]
                    return True, error
        return False, None

    def _lock(self, group_id: str) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(group_id, threading.Lock())

    def get(self, group_id: str) -> Group | None:
        doc = self.docs.get(group_id)
        return Group.from_doc(group_id, copy.deepcopy(doc)) if doc is not None else None

    def all(self, collection: str) -> Iterator[Group]:
        for group_id in sorted(self.docs):
            if group_id.startswith(collection + "/"):
                yield Group.from_doc(group_id, copy.deepcopy(self.docs[group_id]))

    def with_request_status(self, collection: str, statuses: Iterable[str]) -> Iterator[Group]:
        wanted = {str(s) for s in statuses}
        for group in self.all(collection):
            if group.request and str(group.request.status) in wanted:
                yield group

    def transact(self, group_id: str, change: Callable[[GroupTransaction], T]) -> T:
        with self._lock(group_id):
            for attempt in range(self._attempt_limit):
                stored = self.docs.get(group_id)
                group = Group.from_doc(group_id, copy.deepcopy(stored) if stored is not None else None)
                before = group.to_doc()
                tx = ReviewingTransaction(group, self.reviews.get, self.reviews.get_many)
                self.attempts[group_id] += 1
                result = change(tx)
                failed, error = self._take_failure(group_id)
                if failed:
                    if error is not None:
                        raise error
                    if attempt == self._attempt_limit - 1:
                        raise TransactionAborted(f"transaction on {group_id} aborted {self._attempt_limit} times")
                    continue
                doc, changed = tx.write_back(before)
                if doc is not None:
                    self.docs[group_id] = copy.deepcopy(doc)
                    self.writes[group_id] += 1
                self.reviews._create_absent(tx.new_reviews)
                self.reviews._put(changed)
                return result
        raise AssertionError("unreachable")


class InMemoryPatientKeys(PatientKeyRepository):
    def __init__(self) -> None:
        self.docs: dict[str, dict] = {}

    def get(self, patient_id: str) -> PatientKeys | None:
        doc = self.docs.get(patient_id)
        return PatientKeys.from_doc(patient_id, copy.deepcopy(doc)) if doc is not None else None

    def put(self, keys: PatientKeys) -> None:
        keys.updated_at = now_iso()
        self.docs[keys.patient_id] = copy.deepcopy(keys.to_doc())

    def delete(self, patient_id: str) -> None:
        self.docs.pop(patient_id, None)

    def count(self) -> int:
        return len(self.docs)


class InMemoryBackfillRuns(BackfillRunRepository):
    def __init__(self) -> None:
        self.docs: dict[str, dict] = {}
        self.saves = 0

    def load(self, run_id: str) -> BackfillProgress | None:
        doc = self.docs.get(run_id)
        return BackfillProgress.from_doc(run_id, copy.deepcopy(doc)) if doc is not None else None

    def save(self, progress: BackfillProgress) -> None:
        self.docs[progress.run_id] = copy.deepcopy(progress.to_doc())
        self.saves += 1



class InMemoryUpkeepMarks(UpkeepMarks):
    def __init__(self) -> None:
        self.docs: dict[str, dict] = {}
        self.puts = 0

    def get(self, name: str) -> dict | None:
        doc = self.docs.get(name)
        return copy.deepcopy(doc) if doc is not None else None

    def put(self, name: str, mark: dict) -> None:
        self.docs[name] = copy.deepcopy(mark)
        self.puts += 1


class InMemoryAuditLog(AuditLog):
    def __init__(self) -> None:
        self.entries: list[AuditEntry] = []

    def record(self, entry: AuditEntry) -> None:
        self.entries.append(copy.deepcopy(entry))

    def for_item(self, item_id: str) -> list[AuditEntry]:
        return sorted((e for e in self.entries if e.item_id == item_id), key=lambda e: e.at)

    def for_group(self, group: str) -> list[AuditEntry]:
        return sorted((e for e in self.entries if e.group == group), key=lambda e: e.at)

    def last_decision_by(self, actor: str) -> AuditEntry | None:
        mine = [e for e in self.entries if e.actor == actor and e.is_decision]
        return max(mine, key=lambda e: e.at) if mine else None

    def since(self, at: str) -> list[AuditEntry]:
        return sorted((e for e in self.entries if e.at >= at), key=lambda e: e.at)


class InMemoryModelStore(ModelStore):
    """``GcsModelStore`` / ``FileModelStore``: a version is written once, the pointer moves by compare-and-set.
    ``pointer_history`` keeps every pointer written (what the bucket's object versioning keeps)."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.pointer_history: list[CurrentModel] = []

    def describe(self) -> str:
        return "memory"

    def add(self, version: str, artefact: bytes) -> None:
        if check_version_name(version) in self.objects:
            raise ModelVersionExists(version)
        self.objects[version] = bytes(artefact)

    def read(self, version: str) -> bytes:
        if version not in self.objects:
            raise ModelVersionNotFound(version)
        return self.objects[version]

    def versions(self) -> list[str]:
        return sorted(self.objects)

    def current(self) -> CurrentModel | None:
        return self.pointer_history[-1] if self.pointer_history else None

    def move_current(self, to: CurrentModel, *, expected: str | None) -> None:
        now = self.current()
        if (now.version if now else None) != expected:
            raise CurrentModelMoved(f"current is {now.version if now else None}, not {expected}")
        self.pointer_history.append(to)


class InjectedFailure(RuntimeError):
    """What ``fail_next`` of ``InMemoryFhir`` and ``InMemoryMergeJobs`` raises by default: the process
    died (before the call did its work, or after it, before the reply)."""


class _Faults:
    """Failures injected into a fake's calls. ``fail(op, ...)`` makes a later call of ``op`` (one
    whose arguments satisfy ``when``, after ``skip`` such calls went through) raise ``error``:
    before the call does anything, or with ``after`` once its work is done (the reply was lost).
    ``before(op, action, ...)`` runs ``action(*args)`` just before such a call does its work."""

    def __init__(self) -> None:
        self._pending: list[dict] = []
        self._lock = threading.Lock()

    def add(self, op: str, *, when: Callable[..., bool] | None = None, skip: int = 0, after: bool = False,
            error: BaseException | None = None, action: Callable[..., Any] | None = None) -> None:
        with self._lock:
            self._pending.append({"op": op, "when": when, "skip": skip, "after": after, "action": action,
                                  "error": error or InjectedFailure(f"{op} failed (injected)")})

    def _take(self, op: str, args: tuple) -> dict | None:
        with self._lock:
            for fault in self._pending:
                if fault["op"] != op or (fault["when"] is not None and not fault["when"](*args)):
                    continue
                if fault["skip"]:
                    fault["skip"] -= 1
                    return None
                self._pending.remove(fault)
                return fault
        return None

    def run(self, op: str, args: tuple, work: Callable[[], T]) -> T:
        fault = self._take(op, args)
        if fault is not None and fault["action"] is not None:
            fault["action"](*args)
            fault = None
        if fault is not None and not fault["after"]:
            raise fault["error"]
        result = work()
        if fault is not None:
            raise fault["error"]
        return result

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)


_TASK_COUNTERS = ("rewritten", "found", "conflicts")


def _masked(doc: dict, fields: Sequence[str]) -> dict:
    """What a Firestore read with ``field_paths`` returns: only those dotted paths (absent ones omitted)."""
    out: dict = {}
    for path in fields:
        node: Any = doc
        parts = path.split(".")
        for part in parts:
            if not isinstance(node, dict) or part not in node:
                break
            node = node[part]
        else:
            target = out
            for part in parts[:-1]:
                target = target.setdefault(part, {})
            target[parts[-1]] = copy.deepcopy(node)
    return out


def _set_path(doc: dict, path: str, value: Any) -> None:
    """A Firestore ``update`` of a dotted field path: the maps on the way are kept (or made)."""
    *parents, last = path.split(".")
    for part in parents:
        if not isinstance(doc.get(part), dict):
            doc[part] = {}
        doc = doc[part]
    doc[last] = copy.deepcopy(value)


def _merge_into(target: dict, source: dict) -> None:
    """``set(..., merge=True)``: nested maps merge, everything else is replaced."""
    for key, value in source.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge_into(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


class InMemoryMergeJobs(MergeJobsRepository):
    """``MergeJobs`` in memory: ``docs`` (job id -> job document), ``tasks`` (job id -> {Type or
    ``_finalise``: document}) and ``journal`` (job id -> {``Type__id``: entry}), as the collection,
    its ``tasks`` and ``journal`` subcollections hold them. A finished task is counted once (its
    ``tasks`` document is created once, with the decrement of ``remaining`` and its journal entries,
    all or nothing); a failure never overwrites a done type; the finalise claim is the create of
    ``tasks/_finalise``, taken over once ``STALE_FINALISE_CLAIM_SECONDS`` have passed on ``clock``.
    Updating a missing job raises ``LookupError`` (Firestore's NotFound). ``fail_next`` injects
    failures into any method (see ``_Faults``). ``jobs`` seeds documents as they are (reports)."""

    def __init__(self, jobs: Sequence[dict] = (), *, clock: Callable[[], datetime] | None = None):
        self.docs: dict[str, dict] = {job.get("job_id") or f"job-{index:04d}": copy.deepcopy(job)
                                      for index, job in enumerate(jobs)}
        self.tasks: dict[str, dict[str, dict]] = {}
        self.journal: dict[str, dict[str, dict]] = {}
        self.clock = clock or (lambda: datetime.now(UTC))
        self.calls: Counter = Counter()   # method -> calls
        self._faults = _Faults()
        self._lock = threading.RLock()

    def fail_next(self, method: str, *, when: Callable[..., bool] | None = None, skip: int = 0, after: bool = False,
                  error: BaseException | None = None) -> None:
        """A later call of ``method`` (e.g. ``record_task``) raises; see ``_Faults``."""
        self._faults.add(method, when=when, skip=skip, after=after, error=error)

    def _call(self, method: str, args: tuple, work: Callable[[], T]) -> T:
        with self._lock:
            self.calls[method] += 1
            return self._faults.run(method, args, work)

    def _now(self) -> str:
        return self.clock().isoformat()

    def _job(self, job_id: str) -> dict:
        if job_id not in self.docs:
            raise LookupError(f"no merge job {job_id}")
        return self.docs[job_id]

    # --- the job document -------------------------------------------------------------------
    def get(self, job_id: str, fields: Iterable[str] | None = None) -> dict | None:
        def work():
            doc = self.docs.get(job_id)
            if doc is None:
                return None
            return _masked(doc, list(fields)) if fields is not None else copy.deepcopy(doc)
        return self._call("get", (job_id, fields), work)

    def all(self) -> list[dict]:
        return self._call("all", (), lambda: [copy.deepcopy(self.docs[i]) for i in sorted(self.docs)])

    def with_status(self, statuses: Iterable[str]) -> list[dict]:
        wanted = {str(s) for s in statuses}
        return [job for job in self.all() if str(job.get("status")) in wanted]

    def finished(self) -> list[dict]:
        return self._call("finished", (), lambda: [copy.deepcopy(self.docs[i]) for i in sorted(self.docs)
                                                   if self.docs[i].get("status") == JobStatus.DONE])

    def create(self, job: dict) -> tuple[dict, bool]:
        def work():
            current = self.docs.get(job["job_id"])
            if current is not None:
                return copy.deepcopy(current), False
            now = self._now()
            doc = {**copy.deepcopy(job), "remaining": remaining_tasks(job), "finalise_published": False,
                   "created_at": now, "updated_at": now}
            self.docs[job["job_id"]] = doc
            return copy.deepcopy(doc), True
        return self._call("create", (job,), work)

    def record_task(self, job_id: str, resource_type: str, result: dict, *, previous: dict | None = None,
                    journal_done: list[dict] = ()) -> int | None:
        def work():
            counters = {k: result.get(k, 0) for k in _TASK_COUNTERS}
            done = list(journal_done)
            if result["status"] != TaskStatus.DONE:
                self._journal_put(job_id, done, merge=True)
                task = self._job(job_id)["types"].setdefault(resource_type, {})
                if task.get("status") == TaskStatus.DONE:
                    return None
                for k, v in counters.items():
                    task[k] = task.get(k, 0) + v
                task.update(copy.deepcopy({k: v for k, v in result.items() if k not in counters}))
                self.docs[job_id]["updated_at"] = self._now()
                return None
            job = self._job(job_id)   # the batch's update of a missing job fails, and with it the batch
            tasks = self.tasks.setdefault(job_id, {})
            if resource_type in tasks:
                self._journal_put(job_id, done, merge=True)   # a duplicate delivery: counted already
                return None
            self._journal_put(job_id, done, merge=True)
            tasks[resource_type] = {**copy.deepcopy(result), "resource_type": resource_type,
                                    "recorded_at": self._now()}
            for k, v in counters.items():
                _set_path(job, f"types.{resource_type}.{k}", (previous or {}).get(k, 0) + v)
            for k, v in result.items():
                if k not in counters:
                    _set_path(job, f"types.{resource_type}.{k}", v)
            job["remaining"] = job.get("remaining", 0) - 1   # Firestore's Increment(-1) of a missing field
            job["updated_at"] = self._now()
            return job["remaining"]
        return self._call("record_task", (job_id, resource_type, result), work)

    def claim_finalise(self, job_id: str) -> bool:
        def work():
            job = self.docs.get(job_id)
            if not finalise_claimable(job):
                return False
            tasks = self.tasks.setdefault(job_id, {})
            held = tasks.get(FINALISE_MARKER)
            if held is not None and not claim_is_stale(held, self.clock()):
                return False
            tasks[FINALISE_MARKER] = {"claimed_at": self._now(), **({"taken_over": True} if held else {})}
            job.update(finalise_published=True, status=JobStatus.FINALISING.value, updated_at=self._now())
            return True
        return self._call("claim_finalise", (job_id,), work)

    def release_finalise(self, job_id: str) -> None:
        def work():
            self._job(job_id).update(finalise_published=False, status=JobStatus.RUNNING.value,
                                     updated_at=self._now())
            self.tasks.get(job_id, {}).pop(FINALISE_MARKER, None)
        return self._call("release_finalise", (job_id,), work)

    def update(self, job_id: str, **fields: Any) -> None:
        def work():
            job = self._job(job_id)
            for path, value in {**fields, "updated_at": self._now()}.items():
                _set_path(job, path, value)
        return self._call("update", (job_id, fields), work)

    # --- the journal ----------------------------------------------------------------------------
    def _journal_put(self, job_id: str, entries: Iterable[dict], *, merge: bool) -> None:
        journal = self.journal.setdefault(job_id, {})
        for entry in entries:
            key = journal_key(entry["resource_type"], entry["id"])
            if merge and key in journal:
                _merge_into(journal[key], entry)
            else:
                journal[key] = copy.deepcopy(entry)

    def journal_put(self, job_id: str, entries: Iterable[dict], *, merge: bool = False) -> None:
        entries = list(entries)
        return self._call("journal_put", (job_id, entries), lambda: self._journal_put(job_id, entries, merge=merge))

    def journal_entries(self, job_id: str, kind: str | None = None) -> list[dict]:
        def work():
            journal = self.journal.get(job_id, {})
            return [copy.deepcopy(journal[key]) for key in sorted(journal)
                    if kind is None or journal[key].get("kind") == kind]
        return self._call("journal_entries", (job_id, kind), work)

    def for_group(self, group: str) -> list[dict]:
        return sorted((job for job in self.all() if job.get("group") == group), key=lambda j: j.get("created_at") or "")

    def recent(self, *, status: str | None = None, limit: int = 100) -> list[dict]:
        jobs = [job for job in self.all() if not status or job.get("status") == status]
        return sorted(jobs, key=lambda j: j.get("created_at") or "", reverse=True)[:limit]

    def with_duplicate(self, patient_id: str) -> list[dict]:
        return [job for job in self.all() if patient_id in (job.get("duplicates") or [])]


# --- Pub/Sub -------------------------------------------------------------------------------------------


class PublishFailed(RuntimeError):
    """What ``RecordingPublisher.fail_next`` raises by default (Pub/Sub did not store the message)."""


class RecordingPublisher(MessagePublisher):
    """``sent``: ``(message.topic_setting, message)`` of each ``send``; ``published``: ``(topic, data)`` of
    each ``publish_bytes`` and ``attributes`` its attributes. A failed publish records nothing."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []
        self.attributes: list[dict[str, str]] = []
        self.sent: list[tuple[str, Any]] = []
        self._failures: list[list] = []   # [topic or None, error, publishes to let through first]
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def fail_next(self, times: int = 1, *, topic: str | None = None, error: BaseException | None = None,
                  skip: int = 0) -> None:
        """The next ``times`` publishes (to ``topic``: a topic name, or a ``topic_setting`` for ``send``) fail,
        after ``skip`` of them went through."""
        with self._lock:
            self._failures.extend([[topic, error or PublishFailed("publish failed (injected)"), skip]
                                   for _ in range(times)])

    def _record(self, topic: str, record) -> str:
        with self._lock:
            for index, (target, error, skip) in enumerate(self._failures):
                if target is None or target == topic:
                    if skip:
                        self._failures[index][2] -= 1
                        break
                    del self._failures[index]
                    raise error
            record()
            return str(next(self._ids))

    def publish_bytes(self, topic: str, data: bytes, timeout: float = 30.0, **attributes: str) -> str:
        def record():
            self.published.append((topic, bytes(data)))
            self.attributes.append({str(k): str(v) for k, v in attributes.items()})
        return self._record(topic, record)

    def send(self, message: Any) -> str:
        return self._record(message.topic_setting, lambda: self.sent.append((message.topic_setting, message)))

    def payloads(self, topic: str) -> list[bytes]:
        return [body for name, body in self.published if name == topic]


# --- FHIR ----------------------------------------------------------------------------------------------

_REFERENCE_VALUE = re.compile(r"^[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}$")
_VERSION_TAG = re.compile(r'^(?:W/)?"?([^"]*)"?$')
# Search parameters whose element has another name (R4: ``patient`` is ``subject`` on many types).
_PARAM_ELEMENTS = {"patient": ("patient", "subject")}


def _camel(name: str) -> str:
    head, *rest = name.split("-")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _items(params: Params | None) -> list[tuple[str, str]]:
    pairs = params.items() if hasattr(params, "items") else (params or [])
    items: list[tuple[str, str]] = []
    for name, value in pairs:
        values = value if isinstance(value, (list, tuple)) else [value]
        items += [(str(name), str(v)) for v in values]
    return items


def _token_matches(identifiers: list, token: str) -> bool:
    system, bar, value = token.partition("|")
    if not bar:
        system, value = None, token
    for identifier in identifiers or []:
        if system is not None and system != "" and identifier.get("system") != system:
            continue
        if system == "" and identifier.get("system"):
            continue
        if value and identifier.get("value") != value:
            continue
        return True
    return False


class InMemoryFhir(FhirPort):
    """A small FHIR R4 server in memory.

    - Resources by type and id; every write makes a new version (integer ``versionId`` from 1, a
      strictly increasing ``meta.lastUpdated``); a delete leaves a tombstone: ``read`` raises ``Gone``,
      a never-stored resource ``NotFound``; ``vread`` and ``history`` see every version.
    - ``update(if_match=...)`` and batch ``PUT`` entries with ``ifMatch`` refuse a stale version (412).
    - Search: ``_id``, ``identifier=[system]|value`` (comma = OR), reference parameters
      (``subject=Patient/a,Patient/b``: a Patient reference under the element of that name; ``patient``
      also looks under ``subject``), ``_count``, ``_sort`` (``[-]_id``, ``[-]_lastUpdated``); anything
      else is ignored, as a lenient server does. Pages are offset-paged with absolute ``next`` links.
    - ``everything(id)``: the patient and every current resource referencing it. With
      ``everything=False`` the server has no such operation: ``capability()`` does not declare it
      and ``everything`` answers 400, as HAPI configured without it does.
    - ``capability()``: Patient and the Patient-compartment types with their reference parameters,
      and ``$everything`` on Patient.
    - ``fail_next(interaction, ...)`` makes a later call fail, before its work or after it (the
      server did the work, the reply was lost); ``before_next(interaction, action)`` runs
      ``action`` with the call's arguments just before it (a clinician's edit between a read and
      a write). Interactions: read, vread, history, search, everything, capability, create, update,
      batch; a batch's entries are not separate interactions.
    """

    def __init__(self, base_url: str = "http://fhir.test/fhir/", page_size: int = 50, *, everything: bool = True):
        self.base_url = base_url.rstrip("/") + "/"
        self.page_size = page_size
        self.has_everything = everything
        self._faults = _Faults()
        self._versions: dict[tuple[str, str], list[dict | None]] = {}  # None: a deletion
        self._ids = itertools.count(1)
        self._clock = datetime(2025, 1, 1, tzinfo=UTC)
        self._lock = threading.RLock()
        self.requests: Counter = Counter()   # interaction -> count (read, search, update, batch...)

    def fail_next(self, interaction: str, *, when: Callable[..., bool] | None = None, skip: int = 0,
                  after: bool = False, error: BaseException | None = None) -> None:
        """A later ``interaction`` (whose arguments satisfy ``when``, after ``skip`` of them) raises
        ``error`` (``InjectedFailure``): before it does anything, or with ``after`` once it is done."""
        self._faults.add(interaction, when=when, skip=skip, after=after, error=error)

    def before_next(self, interaction: str, action: Callable[..., Any], *,
                    when: Callable[..., bool] | None = None) -> None:
        """``action(*arguments)`` runs just before the next such ``interaction`` does its work."""
        self._faults.add(interaction, when=when, action=action)

    def _serve(self, interaction: str, args: tuple, work: Callable[[], T]) -> T:
        with self._lock:
            self.requests[interaction] += 1
            return self._faults.run(interaction, args, work)

    # --- storage ---------------------------------------------------------------------------------
    def _tick(self) -> str:
        self._clock += timedelta(seconds=1)
        return self._clock.isoformat().replace("+00:00", "Z")

    def _current(self, resource_type: str, id: str) -> dict:
        versions = self._versions.get((resource_type, id))
        if not versions:
            raise NotFound(f"GET {resource_type}/{id} -> 404", status=404)
        if versions[-1] is None:
            raise Gone(f"GET {resource_type}/{id} -> 410", status=410)
        return versions[-1]

    def _store(self, resource: dict) -> dict:
        key = (resource["resourceType"], resource["id"])
        versions = self._versions.setdefault(key, [])
        stored = copy.deepcopy(resource)
        stored["meta"] = {**(stored.get("meta") or {}), "versionId": str(len(versions) + 1),
                          "lastUpdated": self._tick()}
        versions.append(stored)
        return copy.deepcopy(stored)

    def _check_version(self, resource_type: str, id: str, if_match: str | None) -> None:
        if if_match is None:
            return
        wanted = _VERSION_TAG.match(if_match.strip())
        versions = self._versions.get((resource_type, id)) or []
        current = str(len(versions)) if versions and versions[-1] is not None else None
        if current is None or not wanted or wanted.group(1) != current:
            raise PreconditionFailed(f"PUT {resource_type}/{id} -> 412", status=412,
                                     outcome=_outcome("conflict"))

    def delete(self, resource_type: str, id: str) -> None:
        """DELETE (not on the port: tests use it to make a resource gone)."""
        with self._lock:
            self._delete(resource_type, id)

    def _delete(self, resource_type: str, id: str) -> None:
        self._current(resource_type, id)
        self._versions[(resource_type, id)].append(None)

    def resources(self, resource_type: str | None = None) -> list[dict]:
        """Every current resource (of one type), in creation order: for assertions."""
        with self._lock:
            return [copy.deepcopy(versions[-1]) for (rtype, _), versions in self._versions.items()
                    if versions[-1] is not None and resource_type in (None, rtype)]

    # --- reads -----------------------------------------------------------------------------------
    def read(self, resource_type: str, id: str) -> dict:
        return self._serve("read", (resource_type, id), lambda: copy.deepcopy(self._current(resource_type, id)))

    def vread(self, resource_type: str, id: str, version_id: str) -> dict:
        return self._serve("vread", (resource_type, id, version_id), lambda: self._vread(resource_type, id, version_id))

    def _vread(self, resource_type: str, id: str, version_id: str) -> dict:
        versions = self._versions.get((resource_type, id)) or []
        index = int(version_id) - 1 if str(version_id).isdigit() else -1
        if not 0 <= index < len(versions):
            raise NotFound(f"GET {resource_type}/{id}/_history/{version_id} -> 404", status=404)
        if versions[index] is None:
            raise Gone(f"GET {resource_type}/{id}/_history/{version_id} -> 410", status=410)
        return copy.deepcopy(versions[index])

    def history(self, resource_type: str, id: str) -> list[dict]:
        def work():
            versions = self._versions.get((resource_type, id))
            if not versions:
                raise NotFound(f"GET {resource_type}/{id}/_history -> 404", status=404)
            return [copy.deepcopy(v) for v in reversed(versions) if v is not None]
        return self._serve("history", (resource_type, id), work)

    def _matches(self, resource: dict, name: str, value: str) -> bool:
        alternatives = value.split(",")
        if name == "_id":
            return resource["id"] in alternatives
        if name == "identifier":
            return any(_token_matches(resource.get("identifier") or [], token) for token in alternatives)
        if all(_REFERENCE_VALUE.match(v) for v in alternatives):
            elements = _PARAM_ELEMENTS.get(name, (_camel(name.split(":")[0]),))
            wanted = {v.split("/", 1)[1] for v in alternatives if v.startswith("Patient/")}
            return any(pid in wanted and any(part in elements for part in path)
                       for path, pid in patient_references(resource))
        return True  # an unknown parameter: ignored

    def _search_page(self, resource_type: str, items: list[tuple[str, str]]) -> dict:
        filters = [(n, v) for n, v in items if not n.startswith("_") or n == "_id"]
        options = dict(items)
        count = int(options.get("_count", self.page_size))
        offset = int(options.get("_getpagesoffset", 0))
        found = [r for (rtype, _), versions in self._versions.items()
                 if rtype == resource_type and (r := versions[-1]) is not None
                 and all(self._matches(r, n, v) for n, v in filters)]
        for key in reversed([k.strip() for k in options.get("_sort", "").split(",") if k.strip()]):
            field = key.lstrip("-")
            if field in ("_id", "_lastUpdated"):
                found.sort(key=lambda r: r["id"] if field == "_id" else r["meta"]["lastUpdated"],
                           reverse=key.startswith("-"))
        page = found[offset:offset + count]
        bundle: dict[str, Any] = {
            "resourceType": "Bundle", "type": "searchset", "total": len(found),
            "link": [{"relation": "self", "url": self._url(resource_type, items)}],
            "entry": [{"fullUrl": f"{self.base_url}{resource_type}/{r['id']}", "resource": copy.deepcopy(r),
                       "search": {"mode": "match"}} for r in page],
        }
        if offset + count < len(found):
            following = [(n, v) for n, v in items if n != "_getpagesoffset"] + [("_getpagesoffset",
                                                                                 str(offset + count))]
            bundle["link"].append({"relation": "next", "url": self._url(resource_type, following)})
        return bundle

    def _url(self, path: str, items: list[tuple[str, str]]) -> str:
        return f"{self.base_url}{path}" + (f"?{urlencode(items)}" if items else "")

    def search_bundles(self, resource_type: str, params: Params | None = None) -> Iterator[dict]:
        items = _items(params)
        if not any(name == "_count" for name, _ in items):
            items.append(("_count", str(self.page_size)))
        bundle = self._serve("search", (resource_type, items), lambda: self._search_page(resource_type, items))
        while True:
            yield bundle
            link = next((item["url"] for item in bundle.get("link") or [] if item.get("relation") == "next"), None)
            if not link:
                return
            bundle = self.get_path(next_link_path(link, self.base_url))

    def search(self, resource_type: str, params: Params | None = None) -> Iterator[dict]:
        for bundle in self.search_bundles(resource_type, params):
            for entry in bundle.get("entry") or []:
                yield entry["resource"]

    def everything(self, patient_id: str, params: Params | None = None) -> Iterator[dict]:
        def work():
            if not self.has_everything:
                raise FhirError(f"GET Patient/{patient_id}/$everything -> 400", status=400,
                                outcome=_outcome("not-supported"))
            patient = copy.deepcopy(self._current("Patient", patient_id))
            return [patient] + [copy.deepcopy(r) for (rtype, id), versions in self._versions.items()
                                if (r := versions[-1]) is not None and (rtype, id) != ("Patient", patient_id)
                                and any(pid == patient_id for _, pid in patient_references(r))]
        yield from self._serve("everything", (patient_id,), work)

    def get_path(self, path: str) -> dict:
        parts = urlsplit(path)
        segments = [s for s in parts.path.strip("/").split("/") if s]
        items = parse_qsl(parts.query, keep_blank_values=True)
        with self._lock:
            if segments == ["metadata"]:
                return self.capability()
            if len(segments) == 1:
                return self._serve("search", (segments[0], items), lambda: self._search_page(segments[0], items))
            if len(segments) == 2:
                return self.read(*segments)
            if len(segments) == 4 and segments[2] == "_history":
                return self.vread(segments[0], segments[1], segments[3])
        raise FhirError(f"GET {path.split('?')[0]}: not supported by InMemoryFhir", status=400)

    def capability(self) -> dict:
        return self._serve("capability", (), self._capability)

    def _capability(self) -> dict:
        interactions = [{"code": c} for c in ("read", "vread", "update", "create", "delete", "history-instance",
                                                "search-type")]
        compartment = dict(patient_compartment())
        compartment["Provenance"] = tuple(dict.fromkeys((*compartment.get("Provenance", ()), "target")))
        resources = [{"type": "Patient", "interaction": interactions,
                      "searchParam": [{"name": "identifier", "type": "token"}, {"name": "link", "type": "reference"}],
                      "operation": [{"name": "everything",
                                     "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"}]
                      if self.has_everything else []}]
        resources += [{"type": rtype, "interaction": interactions,
                       "searchParam": [{"name": p, "type": "reference"} for p in params]}
                      for rtype, params in sorted(compartment.items()) if rtype != "Patient"]
        return {"resourceType": "CapabilityStatement", "status": "active", "kind": "instance", "fhirVersion": "4.0.1",
                "format": ["json"], "rest": [{"mode": "server", "resource": resources}]}

    # --- writes ----------------------------------------------------------------------------------
    def create(self, resource: dict) -> dict:
        return self._serve("create", (resource,), lambda: self._create(resource))

    def _create(self, resource: dict) -> dict:
        return self._store({**resource, "id": f"{resource['resourceType'][:3].lower()}{next(self._ids):05d}"})

    def update(self, resource: dict, *, if_match: str | None = None) -> dict:
        def work():
            self._check_version(resource["resourceType"], resource["id"], if_match)
            return self._store(resource)
        return self._serve("update", (resource,), work)

    def batch(self, entries: list[dict]) -> list[EntryOutcome]:
        return self._serve("batch", (entries,), lambda: [self._entry(entry) for entry in entries])

    def _entry(self, entry: dict) -> EntryOutcome:
        request = entry.get("request") or {}
        method = str(request.get("method", "")).upper()
        path = str(request.get("url", "")).split("?")[0].strip("/").split("/")
        try:
            if method == "GET":
                resource = self._current(path[0], path[1])
                return EntryOutcome(200, copy.deepcopy(resource), _etag(resource), None, None)
            if method == "DELETE":
                self._delete(path[0], path[1])
                return EntryOutcome(204, None, None, None, None)
            if method == "POST":
                resource = self._create(entry["resource"])
                return EntryOutcome(201, resource, _etag(resource), _location(resource), None)
            if method == "PUT":
                resource = entry["resource"]
                if [resource.get("resourceType"), resource.get("id")] != path[:2]:
                    return EntryOutcome(400, None, None, None, _outcome("invalid"))
                created = (resource["resourceType"], resource["id"]) not in self._versions
                self._check_version(path[0], path[1], request.get("ifMatch"))
                written = self._store(resource)
                return EntryOutcome(201 if created else 200, written, _etag(written), _location(written), None)
        except FhirError as error:
            return EntryOutcome(error.status or 400, None, None, None, error.outcome or _outcome("processing"))
        return EntryOutcome(400, None, None, None, _outcome("not-supported"))


def _etag(resource: dict) -> str:
    return f'W/"{resource["meta"]["versionId"]}"'


def _location(resource: dict) -> str:
    return f"{resource['resourceType']}/{resource['id']}/_history/{resource['meta']['versionId']}"


def _outcome(code: str) -> dict:
    return {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code}]}


# --- everything wired ----------------------------------------------------------------------------------


class FakeServices:
    """Every fake and the services built on them, as ``shared.bootstrap`` wires the real ones."""

    def __init__(self, settings, fhir: InMemoryFhir | None = None, jobs: Sequence[dict] = (), *,
                 clock: Callable[[], datetime] | None = None, model=None):
        """``model``: what ``MatchingService`` decides with (a model, or ``CurrentModelCache``); the default one."""
        from shared.services.matching import MatchingService
        from shared.services.merge_deps import MergeDeps
        from shared.services.merge_requests import MergeRequests
        from shared.services.report import ReportSources
        from shared.services.review import ReviewService

        self.settings = settings
        self.fhir = fhir if fhir is not None else InMemoryFhir()
        self.reviews = InMemoryReviewItems()
        self.groups = InMemoryGroups(self.reviews)
        self.keys = InMemoryPatientKeys()
        self.backfill_runs = InMemoryBackfillRuns()
        self.upkeep = InMemoryUpkeepMarks()
        self.jobs = InMemoryMergeJobs(jobs, clock=clock)
        self.publisher = RecordingPublisher()
        self.requests = MergeRequests(settings, self.groups, self.publisher, self.keys)
        self.matching = MatchingService(settings, self.groups, self.keys, self.fhir, self.requests, model)
        self.audit = InMemoryAuditLog()
        self.review = ReviewService(self.reviews, self.groups, self.matching, self.fhir, audit=self.audit,
                                    jobs=self.jobs, settings=settings)
        self.report_sources = ReportSources(keys=self.keys, groups=self.groups, reviews=self.reviews, jobs=self.jobs)
        self.merge_deps = MergeDeps(settings=settings, fhir=self.fhir, jobs=self.jobs, index=self.requests,
                                    publisher=self.publisher)

    def merge_requests_published(self) -> list[dict]:
        """The merge-requests messages sent, as their JSON bodies carry them."""
        return [message.to_dict() for topic, message in self.publisher.sent if topic == "topic_merge_requests"]


def patient_resource(settings, name: str | None, nik: str | None = None, *, birth: str | None = "1990-05-15",
                     gender: str | None = "male", nik_ibu: str | None = None, phone: str | None = None,
                     source: str | None = None, **extra) -> dict:
    """A Patient to ``create``: NIK under ``settings.nik_system``, a mother's NIK under ``nik_ibu_system``."""
    resource: dict[str, Any] = {"resourceType": "Patient", "active": True, **extra}
    if name:
        resource["name"] = [{"text": name}]
    if birth:
        resource["birthDate"] = birth
    if gender:
        resource["gender"] = gender
    identifiers = list(resource.pop("identifier", []))
    if nik:
        identifiers.append({"system": settings.nik_system, "value": nik})
    if nik_ibu:
        identifiers.append({"system": settings.nik_ibu_system, "value": nik_ibu})
    if identifiers:
        resource["identifier"] = identifiers
    if phone:
        resource["telecom"] = [{"system": "phone", "value": phone}]
    if source:
        resource["meta"] = {"source": f"urn:source:{source}"}
    return resource
