"""The matching index in memory: the ports of ``shared.ports.index`` for one process that owns the index
for a while (the batch backfill decides a whole store here, then writes the result in bulk).

Same contract as the Firestore adapter where the use cases can tell: ``transact`` hands the change a
``Group`` (an empty one when none exists) and keeps what it did, proposed review items that exist
already are not created again (a decided item is never reset), ``get`` returns a copy. What it leaves
out, because one thread owns the index: no locks and no retries. Each transaction works on a copy of
the group (as on Firestore), stored back when the change returns. ``touched`` says which documents
changed since they were loaded: the bulk writer writes only those.

``scope``: the groups one part of the store may touch (the batch backfill decides parts that share no
group in parallel, each in an index of its own). A group outside it is refused (``OutsideScope``), so a
part drawn too small fails loudly instead of deciding on an empty copy of another part's group.

``full``: candidate blocks that reach their member cap with records of other parts (the batch backfill
keeps the records past a block's cap out of its part: the block changes nothing for them). Block id ->
how many members this index's copy holds when the block is full; a later record's transaction then sees
a block at ``member_cap`` (the live index's answer: ``full``) and must change nothing there.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TypeVar

from shared.adapters.review_transaction import ReviewingTransaction
from shared.domain.group import Group
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
                self.load(item)
                self.touched.add(item.id)

    def put(self, items: Iterable[ReviewItem]) -> None:
        """Items a transaction decided or closed, stored as they are now."""
        for item in items:
            self.items[item.id] = item
            self.touched.add(item.id)

    def get_many(self, item_ids: list[str]) -> list[ReviewItem]:
        return [copy.deepcopy(self.items[i]) for i in item_ids if i in self.items]

    def get(self, item_id: str) -> ReviewItem | None:
        item = self.items.get(item_id)
        return copy.deepcopy(item) if item is not None else None

    def pending(self, reason: str | None = None, limit: int = 200) -> list[ReviewItem]:
        return self.with_status(ReviewStatus.PENDING, reason, limit)

    def with_status(self, status: ReviewStatus, reason: str | None = None, limit: int = 200) -> list[ReviewItem]:
        return [copy.deepcopy(i) for i in in_queue(self.items.values(), status, reason=reason)[:limit]]

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

    # --- the review queue (the workbench; the batch does not use these, the port asks for them) -------
    def page(self, queue: QueueFilter, *, after: str | None = None, size: int = 50, now: str) -> QueuePage:
        page = queue_page(self.items.values(), queue, after=self.items.get(after) if after else None, size=size,
                          now=now)
        return QueuePage([copy.deepcopy(i) for i in page.items], page.next_cursor)

    def counts(self, *, reasons: list[str], sources: list[str], now: str) -> QueueCounts:
        return count_pending(in_queue(self.items.values()), reasons=reasons, sources=sources, now=now)

    def reopen(self, item_id: str, expected: ReviewStatus) -> bool:
        item = self.items.get(item_id)
        if item is None or item.status != expected:
            return False
        item.undo_decision()
        self.touched.add(item_id)
        return True

    def record_skip(self, item_id: str) -> None:
        item = self.items[item_id]
        item.skips = int(item.skips or 0) + 1
        self.touched.add(item_id)

    def for_group(self, group: str) -> list[ReviewItem]:
        items = [copy.deepcopy(i) for i in self.items.values() if i.group == group]
        return sorted(items, key=queue_order)



class OutsideScope(LookupError):
    """A group outside the part of the store this index holds."""


class MemoryGroups(GroupRepository):
    """Groups by id (``nik_index/<token>``) as ``Group`` objects."""

    def __init__(self, reviews: MemoryReviewItems, scope: frozenset[str] | None = None,
                 full: Mapping[str, int] | None = None, member_cap: int = 0):
        self.reviews = reviews
        self.groups: dict[str, Group] = {}
        self.touched: set[str] = set()
        self.scope = scope
        self.full = full or {}
        self.member_cap = member_cap

    def _check(self, group_id: str) -> None:
        if self.scope is not None and group_id not in self.scope:
            raise OutsideScope(f"group {group_id} is outside this part of the store")

    def load(self, group: Group) -> None:
        """A group as stored (not a change)."""
        self.groups[group.id] = group

    def get(self, group_id: str) -> Group | None:
        self._check(group_id)
        group = self.groups.get(group_id)
        return group.copy() if group is not None else None

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
        self._check(group_id)
        stored = self.groups.get(group_id)
        here = self.full.get(group_id)
        if here is not None and len(stored.members if stored else ()) >= here:
            return self._at_cap(group_id, stored, change)
        # The change works on its own copy, as on Firestore: nothing it hands on (a CrossJoin's member
        # record, evidence) shares state with the stored group, so batch and incremental decide alike.
        # One copy (``Group.copy``: a block's members are copied for each patient joining it). The document
        # before the change is a second copy, made only when settling can read it: a group tracking review
        # items, or holding a request that closed some (``request_gone``); otherwise every item settled is
        # one the change created, or one it must load anyway.
        group = stored.copy() if stored is not None else Group.from_doc(group_id, None)
        holds_closed = stored is not None and stored.request is not None and bool(stored.request.closed_reviews)
        before = stored.to_doc() if stored is not None and (stored.reviews or holds_closed) else {}
        tx = ReviewingTransaction(group, self.reviews.get, self.reviews.get_many)
        result = change(tx)
        self.reviews.create_absent(tx.new_reviews)
        self.reviews.put([*tx.decided, *tx.settled_reviews(before)])
        self.groups[group_id] = group
        self.touched.add(group_id)  # whether it really changed is decided when written (``to_doc`` compared)
        return result

    def _at_cap(self, group_id: str, stored: Group | None, change: Callable[[GroupTransaction], T]) -> T:
        """A block full with other parts' records: the change sees it at its cap (stand-ins for the
        members held elsewhere) and must leave it as it is; the stand-ins are never stored."""
        group = stored.copy() if stored is not None else Group.from_doc(group_id, None)
        for n in range(self.member_cap - len(group.members)):
            group.members[f"\0elsewhere-{n}"] = {}
        result = change(ReviewingTransaction(group, self.reviews.get, self.reviews.get_many))
        if not getattr(result, "full", False):
            raise OutsideScope(f"block {group_id} is full with other parts' records, yet a record joined it here")
        return result


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
    """The three repositories of one in-memory index (of the groups in ``scope``, when given)."""

    def __init__(self, scope: frozenset[str] | None = None, full: Mapping[str, int] | None = None,
                 member_cap: int = 0) -> None:
        self.reviews = MemoryReviewItems()
        self.groups = MemoryGroups(self.reviews, scope, full, member_cap)
        self.keys = MemoryPatientKeys()
