"""The merge request's life between matching and the merge pipeline: published once, claimed by the
fan-out, completed by the finaliser, undone by an unmerge. Each step is one group transaction over the
domain's transitions (``shared.domain.group``); publishing is at-least-once (the request id makes a
second copy harmless) and marked afterwards, so a crash in between republishes the same request.

The claim refuses chains (``shared.domain.chains``): after claiming, it reads the participants' other
groups (``patient_keys``) and backs off (running -> open, ``ClaimConflict``) when one holds a
participant in its running request. Claim-then-check on both sides means two requests sharing a
patient never both run: the later claim always sees the earlier one. A participant another group
already merged does not make it wait (it stays merged): it leaves the request before the claim.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.config import Settings
from shared.domain.chains import claim_conflicts, merged_elsewhere, settle_merged_participants
from shared.domain.group import Group, group_token
from shared.domain.merge_request import MergeRequest, RequestStatus
from shared.logging import get_logger
from shared.messages import MergeRequested
from shared.ports.index import GroupRepository, PatientKeyRepository
from shared.ports.messaging import MessagePublisher

log = get_logger(__name__)


class ClaimConflict(RuntimeError):
    """A participant is in another group's running request: the request stays open, and the message
    is redelivered later (ids only in the text)."""


def request_message(group_id: str, request: MergeRequest) -> MergeRequested:
    """The merge-requests message of a group's request."""
    return MergeRequested(request_id=request.id, group=group_id, nik_token=group_token(group_id),
                          master=request.master, duplicates=tuple(request.duplicates), reason=request.reason,
                          requested_by=request.requested_by, evidence=request.evidence or {})


class MergeRequests:
    def __init__(self, settings: Settings, groups: GroupRepository, publisher: MessagePublisher,
                 keys: PatientKeyRepository):
        self._settings = settings
        self._groups = groups
        self._publisher = publisher
        self._keys = keys

    # --- matching's side -----------------------------------------------------------------------
    def publish(self, group_id: str, request: MergeRequest | None) -> str | None:
        """Publishes ``request`` if it is open and not published yet; returns its id when it did."""
        if not request or request.published or request.status != RequestStatus.OPEN:
            return None
        self._publisher.send(request_message(group_id, request))
        self.mark_published(group_id, request.id)
        log.info("merge_request_published", request_id=request.id, nik_token=group_token(group_id),
                 master=request.master, duplicates=len(request.duplicates))
        return request.id

    def publish_open(self, group_ids: Iterable[str]) -> list[str]:
        """Publishes every group's open request not published yet (after batch indexing, or a replay)."""
        published = []
        for group_id in sorted(set(group_ids)):
            group = self._groups.get(group_id) or Group(group_id)
            if request_id := self.publish(group_id, group.request):
                published.append(request_id)
        return published

    def mark_published(self, group_id: str, request_id: str) -> None:
        self._groups.transact(group_id, lambda tx: tx.group.mark_published(request_id))

    # --- the merge pipeline's side ---------------------------------------------------------------
    def claim_request(self, group_id: str, request_id: str) -> MergeRequested | None:
        """open -> running; the request as the merge pipeline sees it, or None when not claimable.
        Participants another group already merged leave the open request first (``settle_merged_participants``).
        Raises ``ClaimConflict`` (the request open again) when another group runs a participant."""
        priority = self._settings.source_priority
        current = (self._groups.get(group_id) or Group(group_id)).request
        merged = {}
        if current and current.id == request_id and current.status == RequestStatus.OPEN:
            merged = merged_elsewhere(group_id, current.participants,
                                      self._other_groups(group_id, current.participants))

        def claim(tx):
            left = settle_merged_participants(tx.group, request_id, merged, priority)
            return left, tx.group.claim_request(request_id, priority)

        left, request = self._groups.transact(group_id, claim)
        if left:
            log.info("merge_request_settled", request_id=request_id, merged_elsewhere=left,
                     remaining=sorted(request.participants) if request else [])
        if request is None:
            return None
        conflicts = claim_conflicts(group_id, request.participants,
                                    self._other_groups(group_id, request.participants))
        if conflicts:
            self._groups.transact(group_id, lambda tx: tx.group.unclaim_request(request_id))
            log.warning("merge_request_claim_conflict", request_id=request_id, patient_ids=conflicts)
            raise ClaimConflict(f"merge request {request_id}: patient(s) {', '.join(conflicts)} take part in "
                                f"another group's running merge; retried later")
        return request_message(group_id, request)

    def _other_groups(self, group_id: str, patient_ids: Iterable[str]) -> dict[str, Group]:
        """The other groups the patients are in (their NIK group, block, linked NIK groups)."""
        others: dict[str, Group] = {}
        for pid in sorted(patient_ids):
            keys = self._keys.get(pid)
            for other in (keys.all_groups if keys else []):
                if other != group_id and other not in others:
                    others[other] = self._groups.get(other) or Group(other)
        return others

    def release_request(self, group_id: str, request_id: str, reason: str) -> MergeRequested | None:
        """open/running -> failed; the follow-up request (unpublished) for members that waited, if any."""
        follow_up = self._groups.transact(group_id, lambda tx: tx.group.release_request(request_id, reason))
        return request_message(group_id, follow_up) if follow_up else None

    def complete_request(self, group_id: str, request_id: str, master: str,
                         duplicates: list[str]) -> MergeRequested | None:
        """running -> done; the follow-up request (unpublished) for members that waited, if any."""
        follow_up = self._groups.transact(
            group_id, lambda tx: tx.group.complete_request(request_id, master, list(duplicates)))
        return request_message(group_id, follow_up) if follow_up else None

    def record_unmerge(self, group_id: str, master: str, duplicates: list[str]) -> None:
        def change(tx):
            tx.cause = "unmerge"   # the do-not-match pairs it writes close review items as resolved-by-unmerge
            tx.group.record_unmerge(master, list(duplicates))

        self._groups.transact(group_id, change)
