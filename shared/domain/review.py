"""Review items: a set of patients of one group that a human must decide about. Pure."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from shared.domain.group import group_token


class ReviewStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    CLOSED = "closed"          # a later decision resolved it (``shared.domain.review_closing``): no human needed


class ReviewNotPending(RuntimeError):
    """A decision on an item that is no longer pending (decided, or closed by a later decision)."""


def review_item_id(group: str, patient_ids: Iterable[str], reason: str) -> str:
    key = f"{group}|{','.join(sorted(set(patient_ids)))}|{reason}"
    return "rv-" + hashlib.sha256(key.encode()).hexdigest()[:24]


# Fields a decision writes on the item (an undo removes them again). ``note``: the reviewer's words;
# ``master_choice``: the master the reviewer chose, if any; ``pairs_added``: the confirmed or
# do-not-match pairs this decision added to the group (an undo takes out exactly those); ``approved``: the
# records an approval named (a subset of the item's); ``closed_reason``, ``closed_at``, ``closed_by``: why,
# when and by what a later decision closed the item (``shared.domain.review_closing``); ``merge_request``: the
# request whose coming merge closed it, ``reopened``: why and when it was pending again after that request
# went without merging.
_DECISION_FIELDS = ("decided_by", "decided_at", "refused", "published", "note", "master_choice", "pairs_added",
                    "approved", "closed_reason", "closed_at", "closed_by", "merge_request", "reopened")


@dataclass
class ReviewItem:
    id: str
    reason: str
    group: str
    patient_ids: list[str]
    evidence: dict = field(default_factory=dict)
    status: ReviewStatus = ReviewStatus.PENDING
    created_at: str | None = None
    decision: dict = field(default_factory=dict)   # decided_by, decided_at, refused, published, note, ...
    # The source systems of the item's patients (stamped when proposed: the queue filters on them).
    sources: list[str] = field(default_factory=list)
    skips: int = 0                                   # "not sure" answers so far (notes in the audit log)

    @classmethod
    def proposed(cls, group: str, patient_ids: Iterable[str], reason: str, evidence: dict, now: str) -> ReviewItem:
        ids = list(patient_ids)
        return cls(review_item_id(group, ids, reason), reason, group, ids, evidence, ReviewStatus.PENDING, now)

    @property
    def nik_token(self) -> str:
        return group_token(self.group)

    @classmethod
    def from_doc(cls, item_id: str, doc: Mapping) -> ReviewItem:
        return cls(item_id, doc.get("reason", "unknown"), doc["group"], list(doc.get("patient_ids") or []),
                   dict(doc.get("evidence") or {}), ReviewStatus(doc.get("status", "pending")), doc.get("created_at"),
                   {k: doc[k] for k in _DECISION_FIELDS if k in doc}, list(doc.get("sources") or []),
                   int(doc.get("skips") or 0))

    def to_doc(self) -> dict:
        return {"reason": self.reason, "group": self.group, "nik_token": self.nik_token,
                "patient_ids": list(self.patient_ids), "evidence": self.evidence, "status": str(self.status),
                "created_at": self.created_at, "sources": list(self.sources), "skips": self.skips, **self.decision}

    def as_dict(self) -> dict:
        """What ops tools print: the stored fields with the id."""
        return {"id": self.id, **self.to_doc()}

    def undo_decision(self) -> None:
        """Pending again, without the decision's fields (an undo; the repositories' ``reopen``)."""
        for name in _DECISION_FIELDS:
            self.decision.pop(name, None)
        self.status = ReviewStatus.PENDING


DECISION_FIELDS = _DECISION_FIELDS


def stamp_sources(item: ReviewItem, members: Mapping[str, Mapping]) -> ReviewItem:
    """The item with the source systems of its patients (from the group's members), for the queue's
    source filter. Repositories call it when they create a proposed item."""
    item.sources = sorted({(members.get(pid) or {}).get("source") or "unknown" for pid in item.patient_ids})
    return item


# --- the review queue ------------------------------------------------------------------------------
@dataclass(frozen=True)
class QueueFilter:
    """Which pending items a reviewer looks at: by reason, by source system, older than N days."""
    reason: str | None = None
    source: str | None = None
    older_than_days: int | None = None


@dataclass
class QueuePage:
    items: list[ReviewItem]
    next_cursor: str | None          # the last item's id: the next page starts after it


@dataclass
class QueueCounts:
    """Pending items: in total, by reason, by source system and by age (days since proposed)."""
    total: int
    by_reason: dict[str, int]
    by_source: dict[str, int]
    by_age: dict[str, int]           # "0-1", "1-7", "7-30", "30+" (days)


AGE_BUCKETS = (("0-1", 0, 1), ("1-7", 1, 7), ("7-30", 7, 30), ("30+", 30, None))

# Every reason a review item can carry, in the order the workbench's queue shows them (the queue counts
# items per reason with one query each, so a reason missing here is counted only in the total).
# tests/unit/test_review_reasons.py runs generated districts of every noise model and checks that their
# items carry no other reason. "weak-evidence" is kept for items proposed before it became a no-match.
REVIEW_REASONS = (
    "model-review", "nik-one-digit-review", "nik-conflict", "name-mismatch", "nik-birthdate-mismatch",
    "birthdate-conflict", "gender-conflict", "possible-baby-duplicate", "ambiguous-match", "rival-identity",
    "rival-after-merge", "nik-namesake-nearby", "nik-home-conflict", "nik-serial-lost", "nik-relative-namesake",
    "nik-of-neither", "nik-placeholder-date", "block-request-busy", "weak-evidence", "two-niks-review",
)


def days_before(now: str, days: int) -> str:
    """The ISO timestamp ``days`` before ``now``: the boundaries of the queue's age filters and buckets."""
    return (datetime.fromisoformat(now) - timedelta(days=days)).isoformat()


def queue_order(item: ReviewItem) -> tuple[str, str]:
    """Oldest first, then by id: the order of the ordered Firestore queries (``REVIEW_QUEUE_INDEXES``)."""
    return item.created_at or "", item.id


def in_queue(items: Iterable[ReviewItem], status: ReviewStatus = ReviewStatus.PENDING, *, reason: str | None = None,
             source: str | None = None, created_until: str | None = None) -> list[ReviewItem]:
    """The items of one status matching the queue's filters, in ``queue_order``: what the Firestore
    queries return, for the repositories that hold items in memory."""
    return sorted((i for i in items if i.status == status and (not reason or i.reason == reason)
                   and (not source or source in i.sources)
                   and (created_until is None or (i.created_at or "") <= created_until)), key=queue_order)


def queue_page(items: Iterable[ReviewItem], queue: QueueFilter, *, after: ReviewItem | None, size: int,
               now: str) -> QueuePage:
    """One page of the pending items matching ``queue`` after the item ``after`` (the cursor), in memory."""
    until = days_before(now, queue.older_than_days) if queue.older_than_days else None
    matching = in_queue(items, reason=queue.reason, source=queue.source, created_until=until)
    if after is not None:
        matching = [i for i in matching if queue_order(i) > queue_order(after)]
    return QueuePage(matching[:size], matching[size - 1].id if len(matching) > size else None)


def count_pending(items: list[ReviewItem], *, reasons: list[str], sources: list[str], now: str) -> QueueCounts:
    """The queue's counts over pending items in memory (the Firestore adapter asks count queries)."""
    by_reason = Counter(i.reason if i.reason in reasons else "other" for i in items)
    by_source = Counter(s for i in items for s in i.sources if s in sources)
    by_age: dict[str, int] = {}
    for label, newer_than, older_than in AGE_BUCKETS:
        low = days_before(now, older_than) if older_than is not None else ""
        high = days_before(now, newer_than)
        by_age[label] = sum(1 for i in items if low < (i.created_at or "") <= high)
    return QueueCounts(len(items), dict(by_reason), dict(by_source), by_age)
