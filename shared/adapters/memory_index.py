"""The matching index in memory: the ports of ``shared.ports.index`` for one process that owns the index
for a while (the batch backfill decides a whole store here, then writes the result in bulk).

Same contract as the Firestore adapter where the use cases can tell: ``transact`` hands the change a
``Group`` (an empty one when none exists) and keeps what it did, proposed review items that exist
already are not created again (a decided item is never reset), ``get`` returns a copy. What it leaves
out, because one thread owns the index: no locks, no retries, and no copy of a group per transaction
(a change that raises leaves its partial edits; the batch stops on any error, so nothing half-done is
written). ``touched`` says which documents changed since they were loaded: the bulk writer writes
only those.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

from shared.domain.group import Group
from shared.domain.patient_keys import PatientKeys
from shared.domain.review import ReviewItem, ReviewStatus
from shared.ports.index import GroupRepository, GroupTransaction, PatientKeyRepository, ReviewItemRepository

T = TypeVar("T")


class MemoryReviewItems(ReviewItemRepository):
    def __init__(self) -> None:
        self.items: dict[str, ReviewItem] = {}
        self.touched: set[str] = set()

    def load(self, item: ReviewItem) -> None:
        """An item as stored (not a change)."""
        self.items[item.id] = item

    def create_absent(self, items: Iterable[ReviewItem]) -> None:
        for item in items:
            if item.id not in self.items:
                self.items[item.id] = item
                self.touched.add(item.id)

    def get(self, item_id: str) -> ReviewItem | None:
        item = self.items.get(item_id)
        return copy.deepcopy(item) if item is not None else None

    def pending(self, reason: str | None = None, limit: int = 200) -> list[ReviewItem]:
        ids = sorted(i for i, item in self.items.items() if item.status == ReviewStatus.PENDING
                     and (not reason or item.reason == reason))[:limit]
        return sorted((copy.deepcopy(self.items[i]) for i in ids), key=lambda item: (item.created_at or "", item.id))

    def decide(self, item_id: str, status: ReviewStatus, decision: dict) -> None:
        if item_id not in self.items:
            raise LookupError(f"no review item {item_id}")
        item = self.items[item_id]
        item.status = status
        item.decision.update(copy.deepcopy(decision))
        self.touched.add(item_id)

    def all(self) -> Iterator[ReviewItem]:
        for item_id in sorted(self.items):
            yield copy.deepcopy(self.items[item_id])


class _Transaction(GroupTransaction):
    def __init__(self, group: Group, reviews: MemoryReviewItems):
        self.group = group
        self._reviews = reviews

    def propose_reviews(self, items: Sequence[ReviewItem]) -> None:
        self._reviews.create_absent(items)


class MemoryGroups(GroupRepository):
    """Groups by id (``nik_index/<token>``) as ``Group`` objects."""

    def __init__(self, reviews: MemoryReviewItems):
        self.reviews = reviews
        self.groups: dict[str, Group] = {}
        self.touched: set[str] = set()

    def load(self, group: Group) -> None:
        """A group as stored (not a change)."""
        self.groups[group.id] = group

    def get(self, group_id: str) -> Group | None:
        group = self.groups.get(group_id)
        return Group.from_doc(group_id, copy.deepcopy(group.to_doc())) if group is not None else None

    def all(self, collection: str) -> Iterator[Group]:
        for group_id in sorted(self.groups):
            if group_id.startswith(collection + "/"):
                yield self.get(group_id)

    def with_request_status(self, collection: str, statuses: Iterable[str]) -> Iterator[Group]:
        wanted = {str(s) for s in statuses}
        for group in self.all(collection):
            if group.request and str(group.request.status) in wanted:
                yield group

    def transact(self, group_id: str, change: Callable[[GroupTransaction], T]) -> T:
        group = self.groups.get(group_id)
        if group is None:
            group = self.groups[group_id] = Group.from_doc(group_id, None)
        self.touched.add(group_id)  # whether it really changed is decided when written (``to_doc`` compared)
        return change(_Transaction(group, self.reviews))


class MemoryPatientKeys(PatientKeyRepository):
    def __init__(self) -> None:
        self.keys: dict[str, PatientKeys] = {}
        self.touched: set[str] = set()
        self.deleted: set[str] = set()

    def load(self, keys: PatientKeys) -> None:
        self.keys[keys.patient_id] = keys

    def get(self, patient_id: str) -> PatientKeys | None:
        keys = self.keys.get(patient_id)
        return copy.deepcopy(keys) if keys is not None else None

    def put(self, keys: PatientKeys) -> None:
        self.keys[keys.patient_id] = copy.copy(keys)
        self.touched.add(keys.patient_id)
        self.deleted.discard(keys.patient_id)

    def delete(self, patient_id: str) -> None:
        if self.keys.pop(patient_id, None) is not None:
            self.deleted.add(patient_id)
        self.touched.discard(patient_id)

    def count(self) -> int:
        return len(self.keys)


class MemoryIndex:
    """The three repositories of one in-memory index."""

    def __init__(self) -> None:
        self.reviews = MemoryReviewItems()
        self.groups = MemoryGroups(self.reviews)
        self.keys = MemoryPatientKeys()
