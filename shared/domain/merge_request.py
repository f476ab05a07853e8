"""A group's merge request: its status, what it merges, and its id. Pure; the transitions that move it
(open, claim, complete) are ``Group``'s, since each also changes the members' statuses."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from shared.domain.documents import detached


class RequestStatus(StrEnum):
    OPEN = "open"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"    # released by the sweeper or a refused finalise: its members are live again


def request_id_for(group: str, master: str, duplicates: Iterable[str], attempt: int = 0) -> str:
    """``attempt`` > 0 after requests with the same participants failed: their jobs keep the plain id."""
    key = f"{group}|{master}|{','.join(sorted(set(duplicates)))}" + (f"|{attempt}" if attempt else "")
    return "mr-" + hashlib.sha256(key.encode()).hexdigest()[:24]


_REQUEST_FIELDS = ("id", "status", "master", "duplicates", "reason", "requested_by", "evidence", "published",
                   "created_at", "claimed_at", "completed_at", "follow_up_of", "sweeps", "swept_at", "failed_reason",
                   "fixed_master", "closed_reviews")


@dataclass
class MergeRequest:
    id: str
    status: RequestStatus
    master: str
    duplicates: list[str]
    reason: str | None = None
    requested_by: str | None = None
    evidence: dict = field(default_factory=dict)
    published: bool = False
    created_at: str | None = None
    claimed_at: str | None = None
    completed_at: str | None = None
    follow_up_of: str | None = None
    sweeps: int | None = None           # times the sweeper republished it
    swept_at: str | None = None
    failed_reason: str | None = None
    # A human chose the master (an explicit merge): the claim keeps it instead of re-selecting one.
    fixed_master: bool | None = None
    # Review items closed because this request will merge their records (``shared.domain.review_closing``):
    # reopened if it goes without merging.
    closed_reviews: list[str] | None = None

    @property
    def participants(self) -> set[str]:
        return {self.master, *self.duplicates}

    @property
    def in_progress(self) -> bool:
        return self.status in (RequestStatus.OPEN, RequestStatus.RUNNING)

    @property
    def last_progress(self) -> str | None:
        """When it last moved: opened, claimed, or republished by the sweeper (ISO-8601)."""
        return max(t for t in (self.created_at, self.claimed_at, self.swept_at, "") if t is not None) or None

    def note_sweep(self, at: str) -> None:
        self.sweeps, self.swept_at = (self.sweeps or 0) + 1, at

    @classmethod
    def from_doc(cls, doc: Mapping) -> MergeRequest:
        values = {k: detached(doc[k]) for k in _REQUEST_FIELDS if k in doc}
        values["status"] = RequestStatus(values["status"])
        values["duplicates"] = list(values.get("duplicates") or [])
        values["evidence"] = dict(values.get("evidence") or {})
        return cls(**values)

    def to_doc(self) -> dict:
        """A document sharing no state with the request (``shared.domain.documents``)."""
        doc = {k: detached(getattr(self, k)) for k in _REQUEST_FIELDS if getattr(self, k) is not None}
        doc["status"] = str(self.status)
        doc["duplicates"] = list(self.duplicates)
        return doc


@dataclass(frozen=True)
class RequestPlan:
    """What a use case asks of a group: merge ``duplicates`` into ``master``."""
    master: str
    duplicates: tuple[str, ...]
    reason: str
    requested_by: str
    evidence: dict
