"""The matching index on Firestore: groups, patient keys, review items (the ports in ``shared.ports.index``).

Layout (docs/DESIGN.md, "Firestore layout"; collection names pass through ``Settings.collection``):
``nik_index/{nik_token}`` and ``demographic_index/{block_token}`` hold a ``Group`` each,
``patient_keys/{patient_id}`` a ``PatientKeys``, ``review_items/{id}`` a ``ReviewItem``.

A group changes in one Firestore transaction over its document: read, let the use case change the
``Group``, write the whole document back when ``to_doc()`` differs, together with the review items
the use case proposed. Concurrent events for one NIK therefore serialise and see each other's work.
Groups and review items are stored in ``index_codec``'s form (members and evidence as JSON text), the
batch backfill's bulk writes too.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from google.api_core.exceptions import Aborted
from google.cloud import firestore

from shared.adapters.firestore import TRANSACTION_ATTEMPTS
from shared.adapters.index_codec import decode, encode
from shared.adapters.review_transaction import ReviewingTransaction
from shared.clock import now_iso
from shared.config import Settings
from shared.domain.group import Group, split_group_id
from shared.domain.patient_keys import PatientKeys
from shared.domain.review import (
    AGE_BUCKETS,
    DECISION_FIELDS,
    QueueCounts,
    QueueFilter,
    QueuePage,
    ReviewItem,
    ReviewStatus,
    days_before,
)
from shared.ports.index import GroupRepository, GroupTransaction, PatientKeyRepository, ReviewItemRepository

T = TypeVar("T")
# Threads of one process queue here before a group's transaction: the transaction still guards against
# other instances, but contenders inside one instance no longer wait out Firestore's lock timeouts.
_GROUP_LOCKS = tuple(threading.Lock() for _ in range(256))


def _review_item(snapshot) -> ReviewItem:
    return ReviewItem.from_doc(snapshot.id, decode("review_items", snapshot.to_dict()))


def _group(group_id: str, snapshot) -> Group:
    """The group stored in ``snapshot`` (an empty one when it does not exist)."""
    stored = snapshot.to_dict() if snapshot.exists else None
    return Group.from_doc(group_id, decode(split_group_id(group_id)[0], stored))


class FirestoreReviewItems(ReviewItemRepository):
    def __init__(self, db: firestore.Client, settings: Settings):
        self._db = db
        self._items = db.collection(settings.collection("review_items"))

    def ref(self, item_id: str):
        return self._items.document(item_id)

    def get(self, item_id: str) -> ReviewItem | None:
        snapshot = self.ref(item_id).get()
        return _review_item(snapshot) if snapshot.exists else None

    def _pending_query(self, reason: str | None = None, source: str | None = None):
        query = self._items.where(filter=firestore.FieldFilter("status", "==", str(ReviewStatus.PENDING)))
        if reason:
            query = query.where(filter=firestore.FieldFilter("reason", "==", reason))
        if source:
            query = query.where(filter=firestore.FieldFilter("sources", "array_contains", source))
        return query

    def pending(self, reason: str | None = None, limit: int = 200) -> list[ReviewItem]:
        return self.with_status(ReviewStatus.PENDING, reason, limit)

    def with_status(self, status: ReviewStatus, reason: str | None = None, limit: int = 200) -> list[ReviewItem]:
        # Ordered in the query (index: REVIEW_QUEUE_INDEXES), so ``limit`` keeps the oldest items.
        query = self._items.where(filter=firestore.FieldFilter("status", "==", str(status)))
        if reason:
            query = query.where(filter=firestore.FieldFilter("reason", "==", reason))
        query = query.order_by("created_at").order_by("__name__")
        return [_review_item(s) for s in query.limit(limit).stream()]

    def read(self, item_id: str, transaction) -> ReviewItem | None:
        """The item, read in ``transaction``; None when it does not exist."""
        snapshot = self.ref(item_id).get(transaction=transaction)
        return _review_item(snapshot) if snapshot.exists else None

    def get_many(self, item_ids: list[str], transaction) -> list[ReviewItem]:
        """The items that exist among ``item_ids``, read in ``transaction``."""
        snapshots = self._db.get_all([self.ref(i) for i in item_ids], transaction=transaction)
        return [_review_item(s) for s in snapshots if s.exists]

    def page(self, queue: QueueFilter, *, after: str | None = None, size: int = 50, now: str) -> QueuePage:
        query = self._pending_query(queue.reason, queue.source)
        if queue.older_than_days:
            cutoff = days_before(now, queue.older_than_days)
            query = query.where(filter=firestore.FieldFilter("created_at", "<=", cutoff))
        query = query.order_by("created_at").order_by("__name__")
        if after:
            cursor = self.ref(after).get()
            if cursor.exists:
                query = query.start_after(cursor)
        snapshots = list(query.limit(size + 1).stream())
        items = [_review_item(s) for s in snapshots[:size]]
        return QueuePage(items, items[-1].id if len(snapshots) > size else None)

    def counts(self, *, reasons: list[str], sources: list[str], now: str) -> QueueCounts:
        def count(query) -> int:
            return int(query.count().get()[0][0].value)

        pending = self._pending_query()
        queries = {("total", ""): pending}
        queries |= {("reason", r): self._pending_query(reason=r) for r in reasons}
        queries |= {("source", s): self._pending_query(source=s) for s in sources}
        for label, newer_than, _ in AGE_BUCKETS:
            # Items proposed at least ``newer_than`` days ago; the buckets are the differences.
            queries[("age", label)] = pending.where(
                filter=firestore.FieldFilter("created_at", "<=", days_before(now, newer_than)))
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = dict(zip(queries, pool.map(count, queries.values())))
        return _queue_counts(results, reasons, sources)

    def reopen(self, item_id: str, expected: ReviewStatus) -> bool:
        ref = self.ref(item_id)

        @firestore.transactional
        def run(transaction) -> bool:
            snapshot = ref.get(transaction=transaction)
            if not snapshot.exists or snapshot.get("status") != str(expected):
                return False
            transaction.update(ref, {"status": str(ReviewStatus.PENDING),
                                     **{name: firestore.DELETE_FIELD for name in DECISION_FIELDS}})
            return True
        return run(self._db.transaction())

    def record_skip(self, item_id: str) -> None:
        self.ref(item_id).update({"skips": firestore.Increment(1)})

    def for_group(self, group: str) -> list[ReviewItem]:
        query = self._items.where(filter=firestore.FieldFilter("group", "==", group))
        items = [_review_item(s) for s in query.stream()]
        return sorted(items, key=lambda item: (item.created_at or "", item.id))

    def decide(self, item_id: str, status: ReviewStatus, decision: dict) -> None:
        self.ref(item_id).update({"status": str(status), **decision})

    def all(self) -> Iterator[ReviewItem]:
        for snapshot in self._items.stream():
            yield _review_item(snapshot)


# The composite indexes the review queries need in production (the emulator needs none): declared in
# infra/modules/district/firestore_indexes.tf, held together by tests/infra. (field, "ASCENDING" |
# "DESCENDING" | "CONTAINS") each; the document id follows implicitly.
REVIEW_QUEUE_INDEXES = {
    "review_items": [
        (("status", "ASCENDING"), ("created_at", "ASCENDING")),
        (("status", "ASCENDING"), ("reason", "ASCENDING"), ("created_at", "ASCENDING")),
        (("status", "ASCENDING"), ("sources", "CONTAINS"), ("created_at", "ASCENDING")),
        (("status", "ASCENDING"), ("reason", "ASCENDING"), ("sources", "CONTAINS"), ("created_at", "ASCENDING")),
    ],
}



def _queue_counts(results: dict[tuple[str, str], int], reasons: list[str], sources: list[str]) -> QueueCounts:
    total = results[("total", "")]
    by_reason = {r: results[("reason", r)] for r in reasons if results[("reason", r)]}
    by_source = {s: results[("source", s)] for s in sources if results[("source", s)]}
    if total - sum(by_reason.values()) > 0:
        by_reason["other"] = total - sum(by_reason.values())
    at_least = [results[("age", label)] for label, _, _ in AGE_BUCKETS]
    by_age = {label: at_least[i] - (at_least[i + 1] if i + 1 < len(at_least) else 0)
              for i, (label, _, _) in enumerate(AGE_BUCKETS)}
    return QueueCounts(total, by_reason, by_source, by_age)


class FirestoreGroups(GroupRepository):
    def __init__(self, db: firestore.Client, settings: Settings, reviews: FirestoreReviewItems):
        self._db = db
        self._settings = settings
        self._reviews = reviews

    def _ref(self, group_id: str):
        collection, token = split_group_id(group_id)
        return self._db.collection(self._settings.collection(collection)).document(token)

    def get(self, group_id: str) -> Group | None:
        snapshot = self._ref(group_id).get()
        return _group(group_id, snapshot) if snapshot.exists else None

    def all(self, collection: str) -> Iterator[Group]:
        for snapshot in self._db.collection(self._settings.collection(collection)).stream():
            yield _group(f"{collection}/{snapshot.id}", snapshot)

    def with_request_status(self, collection: str, statuses: Iterable[str]) -> Iterator[Group]:
        query = self._db.collection(self._settings.collection(collection)).where(
            filter=firestore.FieldFilter("request.status", "in", [str(s) for s in statuses]))
        for snapshot in query.stream():
            yield _group(f"{collection}/{snapshot.id}", snapshot)

    def transact(self, group_id: str, change: Callable[[GroupTransaction], T]) -> T:
        ref = self._ref(group_id)

        @firestore.transactional
        def run(transaction):
            snapshot = ref.get(transaction=transaction)
            group = _group(group_id, snapshot)
            before = group.to_doc()
            attempt = ReviewingTransaction(group, lambda item_id: self._reviews.read(item_id, transaction),
                                           lambda item_ids: self._reviews.get_many(item_ids, transaction))
            result = change(attempt)
            doc, changed = attempt.write_back(before)
            if doc is not None:
                transaction.set(ref, encode(split_group_id(group_id)[0], doc))
            for item in [*attempt.new_reviews, *changed]:
                transaction.set(self._reviews.ref(item.id), encode("review_items", item.to_doc()))
            return result

        # The client retries an aborted transaction at once; two contenders then abort each other
        # again and again (seen on the emulator). Retry here with jittered backoff instead.
        for attempt in range(TRANSACTION_ATTEMPTS):
            try:
                with _GROUP_LOCKS[hash(group_id) % len(_GROUP_LOCKS)]:
                    return run(self._db.transaction(max_attempts=1))
            except (Aborted, ValueError) as error:
                aborted = isinstance(error, Aborted) or isinstance(error.__cause__, Aborted)
                if not aborted or attempt == TRANSACTION_ATTEMPTS - 1:
                    raise
                time.sleep(random.uniform(0.0, min(2.0, 0.05 * 2 ** attempt)))
        raise AssertionError("unreachable")


class FirestorePatientKeys(PatientKeyRepository):
    def __init__(self, db: firestore.Client, settings: Settings):
        self._keys = db.collection(settings.collection("patient_keys"))

    def get(self, patient_id: str) -> PatientKeys | None:
        snapshot = self._keys.document(patient_id).get()
        return PatientKeys.from_doc(patient_id, snapshot.to_dict()) if snapshot.exists else None

    def put(self, keys: PatientKeys) -> None:
        keys.updated_at = now_iso()
        self._keys.document(keys.patient_id).set(keys.to_doc())

    def delete(self, patient_id: str) -> None:
        self._keys.document(patient_id).delete()

    def count(self) -> int:
        return sum(1 for _ in self._keys.select([]).stream())
