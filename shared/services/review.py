"""Human review of uncertain matches: list, show, approve (merge), reject (remembered as do-not-match).

A review item names a group (NIK or demographic index document), the patients and the reason. An
approval goes through the same confirmation path as a force-merge with named patients, so the
newborn and twin rules still hold; a rejection writes every pair of the item into the group's
``do_not_match`` list, which matching never proposes again.
"""

from __future__ import annotations

from shared.clock import now_iso
from shared.domain.review import ReviewItem, ReviewStatus
from shared.fhir.errors import Gone, NotFound
from shared.logging import get_logger
from shared.names import patient_name
from shared.ports.fhir import FhirPort
from shared.ports.index import GroupRepository, ReviewItemRepository
from shared.services.matching import MatchingService

log = get_logger(__name__)


class ReviewItemNotFound(LookupError):
    pass


class ReviewAlreadyDecided(RuntimeError):
    pass


class ReviewRefused(RuntimeError):
    pass


class ReviewService:
    def __init__(self, items: ReviewItemRepository, groups: GroupRepository, matching: MatchingService, fhir: FhirPort):
        self._items = items
        self._groups = groups
        self._matching = matching
        self._fhir = fhir

    def pending(self, reason: str | None = None, limit: int = 200) -> list[ReviewItem]:
        return self._items.pending(reason, limit)

    def get(self, item_id: str) -> ReviewItem:
        item = self._items.get(item_id)
        if item is None:
            raise ReviewItemNotFound(f"no review item {item_id}")
        return item

    def _pending_item(self, item_id: str) -> ReviewItem:
        item = self.get(item_id)
        if item.status != ReviewStatus.PENDING:
            raise ReviewAlreadyDecided(f"review item {item_id} is already {item.status}")
        return item

    def patient_details(self, item: ReviewItem) -> list[dict]:
        """The patients' identifying details, read from FHIR for the reviewer's screen only."""
        details = []
        for patient_id in item.patient_ids:
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
        item = self._pending_item(item_id)
        outcome = self._matching.confirm_group(item.group, item.patient_ids, reason="review-approved",
                                               requested_by=reviewer)
        if set(outcome.refused) >= set(item.patient_ids):
            # Nothing could be merged (e.g. the block is busy with another merge): stays pending.
            raise ReviewRefused(f"review item {item_id} stays pending; refused by rule: "
                                f"{sorted(set(outcome.refused.values()))}")
        self._items.decide(item_id, ReviewStatus.APPROVED, {
            "decided_by": reviewer, "decided_at": now_iso(), "refused": outcome.refused,
            "published": outcome.published})
        log.info("review_approved", item_id=item_id, reviewer=reviewer, published=outcome.published,
                 refused=outcome.refused)
        return {"published": outcome.published, "refused": outcome.refused}

    def reject(self, item_id: str, reviewer: str) -> None:
        item = self._pending_item(item_id)
        self._groups.transact(item.group, lambda tx: tx.group.reject(item.patient_ids))
        self._items.decide(item_id, ReviewStatus.REJECTED, {"decided_by": reviewer, "decided_at": now_iso()})
        log.info("review_rejected", item_id=item_id, reviewer=reviewer, patients=len(item.patient_ids))
