"""The review bookkeeping of a group's transaction, one implementation for every ``GroupRepository``
(Firestore, the in-memory index, the test fakes): proposing items (created only when absent, tracked by
the group), a human's decision on a pending item, and the items the change resolved or reopened
(``shared.domain.review_closing.settle_reviews``). A repository gives the transaction its way to read
items (``read``, ``load``: inside its transaction, copies the transaction may change) and writes what
``write_back`` returns."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

from shared.clock import now_iso
from shared.domain.group import Group
from shared.domain.review import ReviewItem, ReviewNotPending, ReviewStatus, stamp_sources
from shared.domain.review_closing import closed_by, settle_reviews
from shared.ports.index import GroupTransaction


class ReviewingTransaction(GroupTransaction):
    def __init__(self, group: Group, read: Callable[[str], ReviewItem | None],
                 load: Callable[[list[str]], list[ReviewItem]]):
        self.group = group
        self._read = read    # one stored item, or None
        self._load = load    # the stored items among the ids
        self.new_reviews: list[ReviewItem] = []   # proposed items that did not exist: created with the group
        self.proposed: list[ReviewItem] = []
        self.decided: list[ReviewItem] = []

    def propose_reviews(self, items: Sequence[ReviewItem]) -> None:
        # On Firestore every read of a transaction comes before its first write: the group and these
        # items are written together when the change returns.
        self.proposed.extend(items)
        for item in items:
            if self._read(item.id) is None:
                self.new_reviews.append(stamp_sources(copy.deepcopy(item), self.group.members))
                self.group.reviews[item.id] = sorted(item.patient_ids)

    def decide_review(self, item_id: str, status: ReviewStatus, decision: dict) -> ReviewItem:
        item = self._read(item_id)
        if item is None or item.status != ReviewStatus.PENDING:
            raise ReviewNotPending(f"review item {item_id} is {item.status if item else 'missing'}")
        item.status = status
        item.decision.update(copy.deepcopy(decision))
        self.cause = self.cause or "decision"
        self.decided.append(item)
        self.group.reviews.pop(item_id, None)
        return item

    def settled_reviews(self, before: dict, after: dict | None = None) -> list[ReviewItem]:
        """The group's items this change closed or reopened (read before the transaction's first write)."""
        return settle_reviews(self.group, before, self._load, proposed=self.proposed,
                              created=[i.id for i in self.new_reviews], deciding=[i.id for i in self.decided],
                              cause=self.cause, by=closed_by(self.decided), now=now_iso(), after=after)

    def write_back(self, before: dict) -> tuple[dict | None, list[ReviewItem]]:
        """What the repository writes when the change returned: the group's document (``updated_at``
        stamped) when it changed, else None; the items decided, closed or reopened (the proposed ones that
        are new are ``new_reviews``, created only when absent). ``before``: the group's document as read."""
        after = self.group.to_doc()
        settled = self.settled_reviews(before, after) if after != before or self.decided else []
        if settled or len(self.group.reviews) != len(after.get("reviews") or {}):
            after = self.group.to_doc()   # closing or reopening changed the group's tracked items
        if after == before:
            return None, [*self.decided, *settled]
        self.group.updated_at = now_iso()
        return self.group.to_doc(), [*self.decided, *settled]
