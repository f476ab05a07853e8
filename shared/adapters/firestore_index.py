"""The matching index on Firestore: groups, patient keys, review items (the ports in ``shared.ports.index``).

Layout (docs/DESIGN.md, "Firestore layout"; collection names pass through ``Settings.collection``):
``nik_index/{nik_token}`` and ``demographic_index/{block_token}`` hold a ``Group`` each,
``patient_keys/{patient_id}`` a ``PatientKeys``, ``review_items/{id}`` a ``ReviewItem``.

A group changes in one Firestore transaction over its document: read, let the use case change the
``Group``, write the whole document back when ``to_doc()`` differs, together with the review items
the use case proposed. Concurrent events for one NIK therefore serialise and see each other's work.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

from google.api_core.exceptions import Aborted
from google.cloud import firestore

from shared.adapters.firestore import TRANSACTION_ATTEMPTS
from shared.clock import now_iso
from shared.config import Settings
from shared.domain.group import Group, split_group_id
from shared.domain.patient_keys import PatientKeys
from shared.domain.review import ReviewItem, ReviewStatus
from shared.ports.index import GroupRepository, GroupTransaction, PatientKeyRepository, ReviewItemRepository

T = TypeVar("T")
# Threads of one process queue here before a group's transaction: the transaction still guards against
# other instances, but contenders inside one instance no longer wait out Firestore's lock timeouts.
_GROUP_LOCKS = tuple(threading.Lock() for _ in range(256))


class FirestoreReviewItems(ReviewItemRepository):
    def __init__(self, db: firestore.Client, settings: Settings):
        self._items = db.collection(settings.collection("review_items"))

    def ref(self, item_id: str):
        return self._items.document(item_id)

    def get(self, item_id: str) -> ReviewItem | None:
        snapshot = self.ref(item_id).get()
        return ReviewItem.from_doc(snapshot.id, snapshot.to_dict()) if snapshot.exists else None

    def pending(self, reason: str | None = None, limit: int = 200) -> list[ReviewItem]:
        query = self._items.where(filter=firestore.FieldFilter("status", "==", str(ReviewStatus.PENDING)))
        if reason:
            query = query.where(filter=firestore.FieldFilter("reason", "==", reason))
        items = [ReviewItem.from_doc(s.id, s.to_dict()) for s in query.limit(limit).stream()]
        return sorted(items, key=lambda item: (item.created_at or "", item.id))

    def decide(self, item_id: str, status: ReviewStatus, decision: dict) -> None:
        self.ref(item_id).update({"status": str(status), **decision})

    def all(self) -> Iterator[ReviewItem]:
        for snapshot in self._items.stream():
            yield ReviewItem.from_doc(snapshot.id, snapshot.to_dict())


class _Transaction(GroupTransaction):
    def __init__(self, group: Group, transaction, reviews: FirestoreReviewItems):
        self.group = group
        self._transaction = transaction
        self._reviews = reviews
        self.new_reviews: list[ReviewItem] = []

    def propose_reviews(self, items: Sequence[ReviewItem]) -> None:
        # Every read of a Firestore transaction comes before its first write: the group and these
        # items are written together when the change returns.
        for item in items:
            if not self._reviews.ref(item.id).get(transaction=self._transaction).exists:
                self.new_reviews.append(item)


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
        return Group.from_doc(group_id, snapshot.to_dict()) if snapshot.exists else None

    def all(self, collection: str) -> Iterator[Group]:
        for snapshot in self._db.collection(self._settings.collection(collection)).stream():
            yield Group.from_doc(f"{collection}/{snapshot.id}", snapshot.to_dict())

    def with_request_status(self, collection: str, statuses: Iterable[str]) -> Iterator[Group]:
        query = self._db.collection(self._settings.collection(collection)).where(
            filter=firestore.FieldFilter("request.status", "in", [str(s) for s in statuses]))
        for snapshot in query.stream():
            yield Group.from_doc(f"{collection}/{snapshot.id}", snapshot.to_dict())

    def transact(self, group_id: str, change: Callable[[GroupTransaction], T]) -> T:
        ref = self._ref(group_id)

        @firestore.transactional
        def run(transaction):
            snapshot = ref.get(transaction=transaction)
            group = Group.from_doc(group_id, snapshot.to_dict() if snapshot.exists else None)
            before = group.to_doc()
            attempt = _Transaction(group, transaction, self._reviews)
            result = change(attempt)
            if group.to_doc() != before:
                group.updated_at = now_iso()
                transaction.set(ref, group.to_doc())
            for item in attempt.new_reviews:
                transaction.set(self._reviews.ref(item.id), item.to_doc())
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
