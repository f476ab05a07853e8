"""The reviewers' audit trail on Firestore (port ``shared.ports.audit.AuditLog``): collection
``review_audit``, one append-only document per action (ids, never patient data)."""

from __future__ import annotations

from google.cloud import firestore

from shared.config import Settings
from shared.domain.audit import AuditEntry
from shared.ports.audit import AuditLog

# Composite index of ``last_decision_by`` in production (infra/modules/district/firestore_indexes.tf).
AUDIT_INDEXES = {"review_audit": [(("actor", "ASCENDING"), ("decision", "ASCENDING"), ("at", "DESCENDING"))]}


class FirestoreAuditLog(AuditLog):
    def __init__(self, db: firestore.Client, settings: Settings):
        self._entries = db.collection(settings.collection("review_audit"))

    def record(self, entry: AuditEntry) -> None:
        self._entries.document(entry.id).create(entry.to_doc())

    def _where(self, field: str, value: str) -> list[AuditEntry]:
        query = self._entries.where(filter=firestore.FieldFilter(field, "==", value))
        return sorted((AuditEntry.from_doc(s.to_dict()) for s in query.stream()), key=lambda e: e.at)

    def for_item(self, item_id: str) -> list[AuditEntry]:
        return self._where("item_id", item_id)

    def for_group(self, group: str) -> list[AuditEntry]:
        return self._where("group", group)

    def last_decision_by(self, actor: str) -> AuditEntry | None:
        query = (self._entries.where(filter=firestore.FieldFilter("actor", "==", actor))
                 .where(filter=firestore.FieldFilter("decision", "==", True))
                 .order_by("at", direction=firestore.Query.DESCENDING).limit(1))
        return next((AuditEntry.from_doc(s.to_dict()) for s in query.stream()), None)

    def since(self, at: str) -> list[AuditEntry]:
        query = self._entries.where(filter=firestore.FieldFilter("at", ">=", at)).order_by("at")
        return [AuditEntry.from_doc(s.to_dict()) for s in query.stream()]
