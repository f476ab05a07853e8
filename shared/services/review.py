"""Human review of uncertain matches: list, show, approve (merge), reject (remembered as do-not-match).

A review item names a group (NIK or demographic index document), the patients and the reason. An
approval goes through the same confirmation path as a force-merge with named patients, so the
newborn and twin rules still hold; a rejection writes every pair of the item into the group's
``do_not_match`` list, which matching never proposes again.
"""

from __future__ import annotations

from datetime import UTC, datetime

from google.cloud import firestore

from shared.adapters.patient_index import PatientIndex, pair_key
from shared.config import Settings
from shared.fhir.client import FhirClient, Gone, NotFound
from shared.logging import get_logger
from shared.names import patient_name
from shared.services.matching import MatchingService

log = get_logger(__name__)


class ReviewItemNotFound(LookupError):
    pass


class ReviewAlreadyDecided(RuntimeError):
    pass


class ReviewRefused(RuntimeError):
    pass


class ReviewService:
    def __init__(self, settings: Settings, db: firestore.Client, index: PatientIndex, matching: MatchingService,
                 fhir: FhirClient):
        self._settings = settings
        self._db = db
        self._index = index
        self._matching = matching
        self._fhir = fhir
        self._items = db.collection(settings.collection("review_items"))

    def pending(self, reason: str | None = None, limit: int = 200) -> list[dict]:
        query = self._items.where(filter=firestore.FieldFilter("status", "==", "pending"))
        if reason:
            query = query.where(filter=firestore.FieldFilter("reason", "==", reason))
        items = [{"id": snap.id, **snap.to_dict()} for snap in query.limit(limit).stream()]
        return sorted(items, key=lambda item: (item.get("created_at") or "", item["id"]))

    def get(self, item_id: str) -> dict:
        snapshot = self._items.document(item_id).get()
        if not snapshot.exists:
            raise ReviewItemNotFound(f"no review item {item_id}")
        return {"id": snapshot.id, **snapshot.to_dict()}

    def patient_details(self, item: dict) -> list[dict]:
        """The patients' identifying details, read from FHIR for the reviewer's screen only."""
        details = []
        for patient_id in item["patient_ids"]:
            try:
                patient = self._fhir.read("Patient", patient_id)
            except (NotFound, Gone):
                details.append({"id": patient_id, "missing": True})
                continue
            details.append({
                "id": patient_id,
                "name": patient_name(patient),
                "birthDate": patient.get("birthDate"),
                "gender": patient.get("gender"),
                "identifiers": [f"{i.get('system', '')}|{i.get('value', '')}" for i in patient.get("identifier") or []],
                "active": patient.get("active", True),
                "source": (patient.get("meta") or {}).get("source"),
            })
        return details

    def approve(self, item_id: str, reviewer: str) -> dict:
        item = self.get(item_id)
        if item["status"] != "pending":
            raise ReviewAlreadyDecided(f"review item {item_id} is already {item['status']}")
        outcome = self._matching.confirm_group(item["group"], item["patient_ids"], reason="review-approved",
                                               requested_by=reviewer)
        if set(outcome.refused) >= set(item["patient_ids"]):
            # Nothing could be merged (e.g. the block is busy with another merge): stays pending.
            raise ReviewRefused(f"review item {item_id} stays pending; refused by rule: "
                                f"{sorted(set(outcome.refused.values()))}")
        self._items.document(item_id).update({
            "status": "approved", "decided_by": reviewer, "decided_at": datetime.now(UTC).isoformat(),
            "refused": outcome.refused, "published": outcome.published,
        })
        log.info("review_approved", item_id=item_id, reviewer=reviewer, published=outcome.published,
                 refused=outcome.refused)
        return {"published": outcome.published, "refused": outcome.refused}

    def reject(self, item_id: str, reviewer: str) -> None:
        item = self.get(item_id)
        if item["status"] != "pending":
            raise ReviewAlreadyDecided(f"review item {item_id} is already {item['status']}")
        ids = sorted(item["patient_ids"])
        pairs = {pair_key(a, b) for a in ids for b in ids if a < b}

        def remember(doc, _transaction):
            doc["do_not_match"] = sorted(set(doc.get("do_not_match") or []) | pairs)
            return True

        self._index.transact_group(item["group"], remember)
        self._items.document(item_id).update({
            "status": "rejected", "decided_by": reviewer, "decided_at": datetime.now(UTC).isoformat()})
        log.info("review_rejected", item_id=item_id, reviewer=reviewer, pairs=len(pairs))
