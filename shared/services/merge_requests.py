"""The merge request's life between matching and the merge pipeline: published once, claimed by the
fan-out, completed by the finaliser, undone by an unmerge. Each step is one group transaction over the
domain's transitions (``shared.domain.group``); publishing is at-least-once (the request id makes a
second copy harmless) and marked afterwards, so a crash in between republishes the same request.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.config import Settings
from shared.domain.group import Group, group_token
from shared.domain.merge_request import MergeRequest, RequestStatus
from shared.logging import get_logger
from shared.messages import MergeRequested
from shared.ports.index import GroupRepository
from shared.ports.messaging import MessagePublisher

log = get_logger(__name__)


def request_message(group_id: str, request: MergeRequest) -> MergeRequested:
    """The merge-requests message of a group's request."""
    return MergeRequested(request_id=request.id, group=group_id, nik_token=group_token(group_id),
                          master=request.master, duplicates=tuple(request.duplicates), reason=request.reason,
                          requested_by=request.requested_by, evidence=request.evidence or {})


class MergeRequests:
    def __init__(self, settings: Settings, groups: GroupRepository, publisher: MessagePublisher):
        self._settings = settings
        self._groups = groups
        self._publisher = publisher

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
        """open -> running; the request as the merge pipeline sees it, or None when not claimable."""
        request = self._groups.transact(
            group_id, lambda tx: tx.group.claim_request(request_id, self._settings.source_priority))
        return request_message(group_id, request) if request else None

    def complete_request(self, group_id: str, request_id: str, master: str,
                         duplicates: list[str]) -> MergeRequested | None:
        """running -> done; the follow-up request (unpublished) for members that waited, if any."""
        follow_up = self._groups.transact(
            group_id, lambda tx: tx.group.complete_request(request_id, master, list(duplicates)))
        return request_message(group_id, follow_up) if follow_up else None

    def record_unmerge(self, group_id: str, master: str, duplicates: list[str]) -> None:
        self._groups.transact(group_id, lambda tx: tx.group.record_unmerge(master, list(duplicates)))
