"""The reviewers' audit trail: who did what to which review item, when, and why. Pure.

An entry names the item and its group by id, never a patient's data: revealing a NIK is recorded as
the action ``reveal-nik`` with the patient id, never the value.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class AuditAction(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    SKIP = "skip"            # "not sure": the item stays pending, the note says why
    UNDO = "undo"            # one's own last decision taken back before its merge started
    REFUSED = "refused"      # an approval a rule (newborn, twins, busy block) refused: nothing changed
    REVEAL_NIK = "reveal-nik"
    UNMERGE = "unmerge"


# Entries that change an item's decision: the ones "undo my last decision" looks at.
DECISION_ACTIONS = frozenset({AuditAction.APPROVE, AuditAction.REJECT, AuditAction.UNDO})


@dataclass
class AuditEntry:
    at: str                          # ISO-8601 UTC
    actor: str                       # the signed-in user's e-mail (IAP) or the ops CLI's --by
    action: AuditAction
    item_id: str | None = None
    group: str | None = None
    note: str | None = None
    details: dict = field(default_factory=dict)   # ids and outcomes only (patient id, job id, refused rules)

    @property
    def is_decision(self) -> bool:
        return self.action in DECISION_ACTIONS

    @property
    def id(self) -> str:
        """Time-ordered and unique enough for one actor's actions (the document id)."""
        digest = hashlib.sha256(f"{self.actor}|{self.action}|{self.item_id}|{self.at}".encode()).hexdigest()[:12]
        return f"{self.at}-{digest}"

    def to_doc(self) -> dict:
        return {"at": self.at, "actor": self.actor, "action": str(self.action), "item_id": self.item_id,
                "group": self.group, "note": self.note, "details": dict(self.details),
                "decision": self.is_decision}

    @classmethod
    def from_doc(cls, doc: Mapping) -> AuditEntry:
        return cls(doc["at"], doc["actor"], AuditAction(doc["action"]), doc.get("item_id"), doc.get("group"),
                   doc.get("note"), dict(doc.get("details") or {}))
