"""Human review of uncertain matches: list, show, approve (merge), reject (remembered as do-not-match).

A review item names a group (NIK or demographic index document), the patients and the reason. An
approval goes through the same confirmation path as a force-merge with named patients, so the
newborn and twin rules still hold; a rejection writes every pair of the item into the group's
``do_not_match`` list, which matching never proposes again.
"""

from __future__ import annotations

from shared.clock import now_iso
from shared.config import Settings, get_settings
from shared.domain.audit import AuditAction, AuditEntry
from shared.domain.group import pairs_of
from shared.domain.review import QueueCounts, QueueFilter, QueuePage, ReviewItem, ReviewNotPending, ReviewStatus
from shared.domain.review_closing import closed_by
from shared.fhir.errors import Gone, NotFound
from shared.linkage.model import model_versions
from shared.logging import get_logger
from shared.names import patient_name
from shared.ports.audit import AuditLog
from shared.ports.fhir import FhirPort
from shared.ports.index import GroupRepository, ReviewItemRepository
from shared.ports.merge_jobs import MergeJobsRepository
from shared.services.matching import MatchingService
from shared.services.review_details import (
    GroupHistory,
    ItemDetails,
    ResourceCounter,
    agreement,
    build_records,
    cluster_of,
    nik_of,
)
from shared.services.review_tracking import track, track_pending

log = get_logger(__name__)


class ReviewItemNotFound(LookupError):
    pass


class ReviewAlreadyDecided(RuntimeError):
    pass


class ReviewRefused(RuntimeError):
    pass


class UndoRefused(RuntimeError):
    """Nothing of one's own to undo, or its merge already started."""


class ReviewService:
    def __init__(self, items: ReviewItemRepository, groups: GroupRepository, matching: MatchingService, fhir: FhirPort,
                 *, audit: AuditLog | None = None, jobs: MergeJobsRepository | None = None,
                 settings: Settings | None = None):
        self._items = items
        self._groups = groups
        self._matching = matching
        self._fhir = fhir
        self._audit = audit          # the workbench always has one; without it decisions are only logged
        self._jobs = jobs
        self._settings = settings or get_settings()
        self._counter = ResourceCounter(fhir, self._settings)

    def pending(self, reason: str | None = None, limit: int = 200) -> list[ReviewItem]:
        return self._items.pending(reason, limit)

    def with_status(self, status: ReviewStatus, reason: str | None = None, limit: int = 200) -> list[ReviewItem]:
        """Items of one status: ``closed`` lists those a later decision resolved, with the reason."""
        return self._items.with_status(status, reason, limit)

    def get(self, item_id: str) -> ReviewItem:
        item = self._items.get(item_id)
        if item is None:
            raise ReviewItemNotFound(f"no review item {item_id}")
        return item

    def _pending_item(self, item_id: str) -> ReviewItem:
        item = self.get(item_id)
        if item.status != ReviewStatus.PENDING:
            closed = f" ({item.decision['closed_reason']})" if item.decision.get("closed_reason") else ""
            raise ReviewAlreadyDecided(f"review item {item_id} is already {item.status}{closed}")
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

    def approve(self, item_id: str, reviewer: str, *, note: str | None = None, master: str | None = None,
                patient_ids: list[str] | None = None) -> dict:
        """Same person: merge (the newborn and twin rules still apply). ``master``: the reviewer's
        choice of master among the item's patients (a golden master already there stays).
        ``patient_ids``: the records of the item that are one person, when the item names candidates of
        which only some are (one item per candidate cluster, ``shared.domain.demographic_plan``); default all."""
        item = self._pending_item(item_id)
        chosen = sorted(set(patient_ids)) if patient_ids is not None else list(item.patient_ids)
        if len(chosen) < 2 or not set(chosen) <= set(item.patient_ids):
            raise ReviewRefused(f"approve at least two patients of review item {item_id}")
        if master is not None and master not in chosen:
            raise ReviewRefused(f"{master} is not a patient of review item {item_id}")
        subset = chosen if set(chosen) != set(item.patient_ids) else None
        decision = _without_none({"decided_by": reviewer, "decided_at": now_iso(), "note": note,
                                  "master_choice": master, "approved": subset})
        try:
            # The item's decision is written in the confirmation's transaction, with the items it resolves.
            outcome = self._matching.confirm_group(item.group, chosen, reason="review-approved",
                                                   requested_by=reviewer, master=master, review=(item_id, decision))
        except ReviewNotPending as error:
            raise ReviewAlreadyDecided(str(error)) from error
        if set(outcome.refused) >= set(chosen):
            # Nothing could be merged (e.g. the block is busy with another merge): stays pending.
            self._record(AuditAction.REFUSED, reviewer, item, note, {"refused": outcome.refused})
            raise ReviewRefused(f"review item {item_id} stays pending; refused by rule: "
                                f"{sorted(set(outcome.refused.values()))}")
        self._items.decide(item_id, ReviewStatus.APPROVED, {"published": outcome.published})
        self._record(AuditAction.APPROVE, reviewer, item, note, _without_none({
            "refused": outcome.refused, "published": outcome.published, "master_choice": master,
            "approved": decision.get("approved")}))
        log.info("review_approved", item_id=item_id, reviewer=reviewer, published=outcome.published,
                 refused=outcome.refused)
        return {"published": outcome.published, "refused": outcome.refused}

    def reject(self, item_id: str, reviewer: str, *, note: str | None = None) -> None:
        """Not the same person: every pair of the item becomes do-not-match, never proposed again."""
        item = self._pending_item(item_id)

        def change(tx):
            # The decision and the do-not-match pairs in one transaction, with the items they resolve.
            added = sorted(pairs_of(item.patient_ids) - tx.group.do_not_match)
            tx.group.reject(item.patient_ids)
            tx.decide_review(item_id, ReviewStatus.REJECTED, _without_none({
                "decided_by": reviewer, "decided_at": now_iso(), "note": note, "pairs_added": added}))

        try:
            self._groups.transact(item.group, change)
        except ReviewNotPending as error:
            raise ReviewAlreadyDecided(str(error)) from error
        self._record(AuditAction.REJECT, reviewer, item, note, {})
        log.info("review_rejected", item_id=item_id, reviewer=reviewer, patients=len(item.patient_ids))

    def track_pending(self) -> dict[str, int]:
        """Items left pending from before groups tracked their items (``Group.reviews``): each group
        learns its pending items in one transaction, which also closes those a decision already answered
        (``review_tracking``; the sweeper does the same once per district on its own)."""
        done = track_pending(self._items, self._groups)
        log.info("review_items_tracked", groups=done.groups, tracked=done.tracked, closed=done.closed)
        return {"groups": done.groups, "tracked": done.tracked, "closed": done.closed}

    # --- the workbench: queue, skip, undo, details, NIK reveal --------------------------------------
    def queue(self, queue: QueueFilter = QueueFilter(), *, after: str | None = None, size: int = 50) -> QueuePage:
        return self._items.page(queue, after=after, size=size, now=now_iso())

    def queue_counts(self, reasons: list[str], sources: list[str]) -> QueueCounts:
        return self._items.counts(reasons=reasons, sources=sources, now=now_iso())

    def skip(self, item_id: str, reviewer: str, note: str | None = None) -> None:
        """Not sure: the item stays pending for someone else (or later); the note says why."""
        item = self._pending_item(item_id)
        self._items.record_skip(item_id)
        self._record(AuditAction.SKIP, reviewer, item, note, {})
        log.info("review_skipped", item_id=item_id, reviewer=reviewer)

    def last_decision(self, reviewer: str) -> AuditEntry | None:
        """The reviewer's latest decision if it can still be undone (its merge has not started)."""
        entry = self._audit.last_decision_by(reviewer) if self._audit else None
        if entry is None or entry.action == AuditAction.UNDO or not entry.item_id:
            return None
        item = self._items.get(entry.item_id)
        if item is None or item.decision.get("decided_by") != reviewer or item.status == ReviewStatus.PENDING:
            return None
        if item.status == ReviewStatus.APPROVED and not self._approval_withdrawable(item):
            return None
        return entry

    def _approval_withdrawable(self, item: ReviewItem) -> bool:
        group = self._groups.get(item.group)
        request = group.request if group else None
        published = item.decision.get("published") or []
        return bool(request and request.id in published and request.status == "open"
                    and request.participants <= set(item.patient_ids))

    def undo_last(self, reviewer: str) -> ReviewItem:
        """Takes back the reviewer's own last decision while its merge has not started: the item is
        pending again, an approval's open request is withdrawn, the pairs it added are forgotten."""
        entry = self.last_decision(reviewer)
        if entry is None:
            raise UndoRefused("nothing to undo: no decision of yours, already undone, or its merge has started")
        item = self.get(entry.item_id)
        pairs = list(item.decision.get("pairs_added") or [])
        # The items this decision closed ask their question again, tracked by the group with the item.
        closed = [o for o in self._items.for_group(item.group)
                  if o.status == ReviewStatus.CLOSED and o.decision.get("closed_by") == closed_by([item])]
        if item.status == ReviewStatus.APPROVED:
            published = list(item.decision.get("published") or [])
            withdrawn = self._groups.transact(item.group, lambda tx: any(
                tx.group.withdraw_request(rid, item.patient_ids, pairs) for rid in published))
            if not withdrawn:
                raise UndoRefused(f"the merge of review item {item.id} has started: ask a supervisor to unmerge")
        else:
            self._groups.transact(item.group, lambda tx: tx.group.forget_rejection(pairs))
        if not self._items.reopen(item.id, item.status):
            raise UndoRefused(f"review item {item.id} changed meanwhile")
        # The items this decision closed ask their question again; the group tracks them all again.
        reopened = [item, *(o for o in closed if self._items.reopen(o.id, ReviewStatus.CLOSED))]
        self._groups.transact(item.group, lambda tx: track(tx, {i.id: sorted(i.patient_ids) for i in reopened}))
        self._record(AuditAction.UNDO, reviewer, item, None, {"undone": str(entry.action)})
        log.info("review_undone", item_id=item.id, reviewer=reviewer, undone=str(entry.action))
        return self.get(item.id)

    def details(self, item_id: str) -> ItemDetails:
        """The item with its records side by side, resource counts, cluster and group history."""
        item = self.get(item_id)
        group = self._groups.get(item.group)
        records = build_records(self._fhir, self._counter, self._settings, item.patient_ids, group)
        history = GroupHistory(
            items=self._items.for_group(item.group),
            jobs=self._jobs.for_group(item.group) if self._jobs else [],
            audit=self._audit.for_group(item.group) if self._audit else [])
        return ItemDetails(item, records, agreement(records), cluster_of(group, item), history)

    def reveal_nik(self, item_id: str, patient_id: str, reviewer: str) -> str | None:
        """One patient's NIK in full, for the reviewer's screen; the reveal is audited (never the value)."""
        item = self.get(item_id)
        if patient_id not in item.patient_ids:
            raise ReviewItemNotFound(f"patient {patient_id} is not in review item {item_id}")
        try:
            patient = self._fhir.read("Patient", patient_id)
        except (NotFound, Gone):
            return None
        self._record(AuditAction.REVEAL_NIK, reviewer, item, None, {"patient_id": patient_id})
        log.info("review_nik_revealed", item_id=item_id, patient_id=patient_id, reviewer=reviewer)
        return nik_of(patient, self._settings)

    def _record(self, action: AuditAction, actor: str, item: ReviewItem, note: str | None, details: dict) -> None:
        if self._audit is not None:
            # The model versions that proposed the item stay with what a person did about it.
            versions = model_versions(item.evidence)
            details = details | ({"model_versions": versions} if versions else {})
            self._audit.record(AuditEntry(now_iso(), actor, action, item.id, item.group, note or None, details))


def _without_none(fields: dict) -> dict:
    return {k: v for k, v in fields.items() if v is not None}
