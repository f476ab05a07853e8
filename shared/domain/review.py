"""Review items: a set of patients of one group that a human must decide about. Pure."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from shared.domain.group import group_token


class ReviewStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


def review_item_id(group: str, patient_ids: Iterable[str], reason: str) -> str:
    key = f"{group}|{','.join(sorted(set(patient_ids)))}|{reason}"
    return "rv-" + hashlib.sha256(key.encode()).hexdigest()[:24]


_DECISION_FIELDS = ("decided_by", "decided_at", "refused", "published")


@dataclass
class ReviewItem:
    id: str
    reason: str
    group: str
    patient_ids: list[str]
    evidence: dict = field(default_factory=dict)
    status: ReviewStatus = ReviewStatus.PENDING
    created_at: str | None = None
    decision: dict = field(default_factory=dict)   # decided_by, decided_at, refused, published

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
                   {k: doc[k] for k in _DECISION_FIELDS if k in doc})

    def to_doc(self) -> dict:
        return {"reason": self.reason, "group": self.group, "nik_token": self.nik_token,
                "patient_ids": list(self.patient_ids), "evidence": self.evidence, "status": str(self.status),
                "created_at": self.created_at, **self.decision}

    def as_dict(self) -> dict:
        """What ops tools print: the stored fields with the id."""
        return {"id": self.id, **self.to_doc()}
