"""A matching group and its merge request: the typed state the index stores, and every transition of it.

A *group* is every patient sharing one NIK (``nik_index/<token>``) or, for records without a NIK, one
birth date + sex block (``demographic_index/<token>``). It holds the members' index records, the
group's master, at most one merge request, and the pairs humans decided (``confirmed``,
``do_not_match``). A request moves ``open -> running -> done``:

- matching opens it (or adds duplicates to the open one); while one runs, newly matched members wait
  as ``pending`` and become the follow-up request when it completes;
- the merge fan-out claims it (``open -> running``), re-selecting the master when none is golden yet;
- the finaliser completes it (``running -> done``), marking duplicates merged and the master golden;
- an unmerge records the pairs as ``do_not_match`` and brings the members back;
- a request that cannot finish (its job failed, or the sweeper gave up on it) is released
  (``-> failed``): its members are live again and those that waited get their own follow-up.

Pure: no I/O. Repositories load a ``Group`` from a document, a use case calls these methods inside the
group's transaction, and the repository writes ``to_doc()`` back when it changed.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.clock import now_iso
from shared.domain.documents import detached
from shared.domain.master import golden_members, select_master
from shared.domain.members import (  # noqa: F401  (the group's vocabulary, imported from here by its users)
    IN_REQUEST_STATUSES,
    LIVE_STATUSES,
    Member,
    MemberStatus,
    is_live,
    pair_key,
    pairs_of,
)
from shared.domain.merge_request import MergeRequest, RequestPlan, RequestStatus, request_id_for

NIK_GROUPS = "nik_index"
DEMOGRAPHIC_GROUPS = "demographic_index"
GROUP_COLLECTIONS = (NIK_GROUPS, DEMOGRAPHIC_GROUPS)


def group_id(collection: str, token: str) -> str:
    if collection not in GROUP_COLLECTIONS:
        raise ValueError(f"unknown group collection {collection!r}")
    return f"{collection}/{token}"


def split_group_id(group: str) -> tuple[str, str]:
    collection, _, token = group.partition("/")
    if collection not in GROUP_COLLECTIONS or not token:
        raise ValueError(f"not a group id: {group!r}")
    return collection, token


def group_token(group: str) -> str:
    return split_group_id(group)[1]


def is_nik_group(group: str) -> bool:
    return group.startswith(NIK_GROUPS + "/")


@dataclass
class Group:
    id: str
    members: dict[str, Member] = field(default_factory=dict)
    master: str | None = None
    request: MergeRequest | None = None
    previous_request: MergeRequest | None = None
    do_not_match: set[str] = field(default_factory=set)
    confirmed: set[str] = field(default_factory=set)
    released: list[str] = field(default_factory=list)   # ids of failed requests: never reused
    # This group's pending review items (id -> their patient ids): its transaction reads those a change
    # touched (not a query) to close the ones it answered (``shared.domain.review_closing``).
    reviews: dict[str, list[str]] = field(default_factory=dict)
    updated_at: str | None = None

    # --- storage form ----------------------------------------------------------------------------
    @classmethod
    def from_doc(cls, group: str, doc: Mapping | None) -> Group:
        doc = doc or {}
        request, previous = doc.get("request"), doc.get("previous_request")
        return cls(
            id=group,
            members={pid: detached(dict(m)) for pid, m in (doc.get("members") or {}).items()},  # type: ignore[misc]
            master=doc.get("master"),
            request=MergeRequest.from_doc(request) if request else None,
            previous_request=MergeRequest.from_doc(previous) if previous else None,
            do_not_match=set(doc.get("do_not_match") or ()),
            confirmed=set(doc.get("confirmed") or ()),
            released=list(doc.get("released") or ()),
            reviews={rid: list(ids) for rid, ids in (doc.get("reviews") or {}).items()},
            updated_at=doc.get("updated_at"),
        )

    def copy(self) -> Group:
        """``Group.from_doc(self.id, self.to_doc())`` in one pass instead of two: a group sharing no state
        with this one (the in-memory index's transactions each work on one, as Firestore's do)."""
        return Group(
            id=self.id,
            members={pid: detached(dict(m)) for pid, m in self.members.items()},  # type: ignore[misc]
            master=self.master,
            request=MergeRequest.from_doc(self.request.to_doc()) if self.request else None,
            previous_request=MergeRequest.from_doc(self.previous_request.to_doc()) if self.previous_request else None,
            do_not_match=set(self.do_not_match),
            confirmed=set(self.confirmed),
            released=list(self.released),
            reviews={rid: sorted(ids) for rid, ids in sorted(self.reviews.items())},
            updated_at=self.updated_at or None,
        )

    def to_doc(self) -> dict[str, Any]:
        """A document sharing no state with the group: the repositories compare it before and after a
        change to decide whether to write (``shared.domain.documents``)."""
        doc: dict[str, Any] = {
            "members": {pid: detached(dict(m)) for pid, m in self.members.items()},
            "master": self.master,
            "request": self.request.to_doc() if self.request else None,
            "do_not_match": sorted(self.do_not_match),
            "confirmed": sorted(self.confirmed),
        }
        if self.released:
            doc["released"] = list(self.released)
        if self.reviews:
            doc["reviews"] = {rid: sorted(ids) for rid, ids in sorted(self.reviews.items())}
        if self.previous_request:
            doc["previous_request"] = self.previous_request.to_doc()
        if self.updated_at:
            doc["updated_at"] = self.updated_at
        return doc

    @property
    def token(self) -> str:
        return group_token(self.id)

    @property
    def is_nik(self) -> bool:
        return is_nik_group(self.id)

    def status_of(self, patient_id: str) -> str | None:
        return (self.members.get(patient_id) or {}).get("status")

    def set_status(self, patient_id: str, status: MemberStatus) -> None:
        self.members.setdefault(patient_id, {})["status"] = str(status)

    def is_rejected(self, a: str, b: str) -> bool:
        return pair_key(a, b) in self.do_not_match

    def is_confirmed(self, a: str, b: str) -> bool:
        return pair_key(a, b) in self.confirmed

    # --- transitions -----------------------------------------------------------------------------
    def open_request(self, plan: RequestPlan) -> MergeRequest:
        """Records a new open request, or adds the duplicates to the open one; while a request runs,
        the new duplicates wait as ``pending`` members (completing the running one opens the follow-up).
        Returns the group's request."""
        wanted = [d for d in dict.fromkeys(plan.duplicates) if d != plan.master]
        request = self.request
        if request and request.status == RequestStatus.OPEN:
            in_request = request.participants
            for pid in [plan.master, *wanted]:
                if pid not in in_request:
                    request.duplicates.append(pid)
                    in_request.add(pid)
                    self.set_status(pid, MemberStatus.DUPLICATE)
            joined = request.evidence.setdefault("joined", [])
            if plan.evidence and plan.evidence not in joined and plan.evidence != request.evidence.get("first"):
                joined.append(copy.deepcopy(plan.evidence))   # a copy: the caller's dict may change later
            return request
        if request and request.status == RequestStatus.RUNNING:
            in_request = request.participants
            for pid in [plan.master, *wanted]:
                if pid not in in_request and self.status_of(pid) not in (MemberStatus.MERGED, MemberStatus.DELETED):
                    self.set_status(pid, MemberStatus.PENDING)
            return request
        attempt = 0
        while request_id_for(self.id, plan.master, wanted, attempt) in self.released:
            attempt += 1   # its job exists, failed: a new id gets a new job
        request = MergeRequest(
            id=request_id_for(self.id, plan.master, wanted, attempt), status=RequestStatus.OPEN, master=plan.master,
            duplicates=sorted(wanted), reason=plan.reason, requested_by=plan.requested_by,
            evidence={"first": copy.deepcopy(plan.evidence or {})}, published=False, created_at=now_iso())
        self.request = request
        self.master = plan.master
        self.set_status(plan.master, MemberStatus.MASTER)
        for pid in wanted:
            self.set_status(pid, MemberStatus.DUPLICATE)
        return request

    def unpublished_request(self) -> MergeRequest | None:
        """The open request that still has to be sent to the merge pipeline."""
        request = self.request
        return request if request and request.status == RequestStatus.OPEN and not request.published else None

    def mark_published(self, request_id: str) -> bool:
        request = self.request
        if not request or request.id != request_id or request.published:
            return False
        request.published = True
        return True

    def claim_request(self, request_id: str, source_priority: list[str]) -> MergeRequest | None:
        """The fan-out's claim: open -> running (re-selecting the master when none is golden yet, so
        arrival order does not decide it); running with this id -> the same request again; else None."""
        request = self.request
        if not request or request.id != request_id:
            return None
        if request.status == RequestStatus.RUNNING:
            return request
        if request.status != RequestStatus.OPEN:
            return None
        everyone = [request.master, *request.duplicates]
        # A human's chosen master (an explicit merge, a reviewer's choice) stands, like a golden one.
        if not request.fixed_master and not golden_members(self.members, everyone):
            master = select_master(self.members, everyone, source_priority)
            request.master = master
            request.duplicates = sorted(p for p in everyone if p != master)
        request.status = RequestStatus.RUNNING
        request.claimed_at = now_iso()
        self.master = request.master
        self.set_status(request.master, MemberStatus.MASTER)
        for pid in request.duplicates:
            self.set_status(pid, MemberStatus.DUPLICATE)
        return request

    def unclaim_request(self, request_id: str) -> bool:
        """running -> open again: the fan-out found a participant in another group's running request
        (a chain) and backs off; the claim is retried later."""
        request = self.request
        if not request or request.id != request_id or request.status != RequestStatus.RUNNING:
            return False
        request.status, request.claimed_at = RequestStatus.OPEN, None
        return True

    def release_request(self, request_id: str, reason: str) -> MergeRequest | None:
        """The request cannot finish (``-> failed``): its duplicates are active again, members deleted
        while it ran leave, the master stays master only if it is golden. Members that waited as
        ``pending`` become a follow-up request on a live master (returned unpublished), else active."""
        request = self.request
        if not request or request.id != request_id or request.status not in (RequestStatus.OPEN,
                                                                               RequestStatus.RUNNING):
            return None
        request.status, request.failed_reason, request.completed_at = RequestStatus.FAILED, reason, now_iso()
        self.previous_request, self.request = request, None
        self.released = [*self.released, request.id][-20:]
        for pid in request.participants:
            member = self.members.get(pid)
            if member is None:
                continue
            if member.get("status") == MemberStatus.DELETED:
                del self.members[pid]
            elif member.get("status") in (MemberStatus.DUPLICATE, MemberStatus.MASTER) and not member.get("golden"):
                member["status"] = str(MemberStatus.ACTIVE)
        golden = golden_members(self.members, self.members)
        self.master = golden[0] if golden else None
        pending = sorted(pid for pid, m in self.members.items() if m.get("status") == MemberStatus.PENDING)
        master = request.master if is_live(self.members.get(request.master)) else self.master
        if not pending or master is None:
            for pid in pending:
                self.set_status(pid, MemberStatus.ACTIVE)
            return None
        follow_up = self.open_request(RequestPlan(master, tuple(pending), "follow-up", "matching",
                                                  {"follow_up_of": request_id}))
        follow_up.follow_up_of = request_id
        return follow_up

    def holds_in_running_request(self, patient_id: str) -> bool:
        """The patient takes part in this group's running request (a merge is rewriting it now)."""
        return bool(self.request and self.request.status == RequestStatus.RUNNING
                    and patient_id in self.request.participants)

    def complete_request(self, request_id: str, master: str, duplicates: list[str]) -> MergeRequest | None:
        """The finaliser's completion: duplicates ``merged``, the master golden, the request ``done``.
        Members left ``pending`` while it ran become a follow-up request, returned (unpublished) for
        the caller to publish; a redelivery returns the same follow-up while it is unpublished."""
        request = self.request
        if not request:
            return None
        if request.id != request_id:
            if request.follow_up_of == request_id and not request.published:
                return request
            return None
        if request.status == RequestStatus.DONE:
            return None
        for pid in duplicates:
            self.members.setdefault(pid, {}).update(status=str(MemberStatus.MERGED), active=False, golden=False,
                                                    replaced_by=master)
        self.members.setdefault(master, {}).update(status=str(MemberStatus.MASTER), golden=True, active=True)
        request.status = RequestStatus.DONE
        request.master = master
        request.duplicates = sorted(duplicates)
        request.completed_at = now_iso()
        self.master = master
        pending = sorted(pid for pid, m in self.members.items() if m.get("status") == MemberStatus.PENDING)
        if not pending:
            return None
        self.request = None
        follow_up = self.open_request(RequestPlan(master, tuple(pending), "follow-up", "matching",
                                                  {"follow_up_of": request_id}))
        follow_up.follow_up_of = request_id
        self.previous_request = request
        return follow_up

    def record_unmerge(self, master: str, duplicates: list[str]) -> None:
        """A human undid this merge: its pairs become do-not-match (the automation would otherwise merge
        the re-activated patients straight back) and the members are live again. The master stays
        golden only while other members remain merged into it."""
        self.do_not_match |= {pair_key(master, pid) for pid in duplicates}
        for pid in duplicates:
            if pid in self.members:
                self.members[pid].update(status=str(MemberStatus.ACTIVE), active=True, replaced_by=None, golden=False)
        still_merged = any(m.get("replaced_by") == master and m.get("status") == MemberStatus.MERGED
                           for pid, m in self.members.items() if pid not in duplicates)
        if master in self.members and not still_merged:
            self.members[master].update(status=str(MemberStatus.ACTIVE), golden=False)

    def withdraw_request(self, request_id: str, patient_ids: Iterable[str], confirmed_pairs: Iterable[str]) -> bool:
        """A reviewer took back the approval that opened this request, before the merge started: the
        request goes (the fan-out will find nothing to claim), its members are in review again and the
        pairs the approval confirmed are forgotten. Only a request that is still open and holds
        nothing but the approved patients can go; returns whether it went."""
        request = self.request
        ids = set(patient_ids)
        if not request or request.id != request_id or request.status != RequestStatus.OPEN \
                or not request.participants <= ids:
            return False
        self.request = None
        for pid in request.participants:
            if pid in self.members:
                self.members[pid].update(status=str(MemberStatus.REVIEW))
        if self.master in request.participants and not (self.members.get(self.master) or {}).get("golden"):
            self.master = None
        self.confirmed -= set(confirmed_pairs)
        return True

    def forget_rejection(self, pairs: Iterable[str]) -> None:
        """A reviewer took back a rejection: exactly the pairs it added are no longer do-not-match."""
        self.do_not_match -= set(pairs)

    def reject(self, patient_ids: Iterable[str]) -> None:
        """A human said these are different people: never proposed again."""
        self.do_not_match |= pairs_of(patient_ids)

    def confirm(self, patient_ids: Iterable[str]) -> None:
        """A human said these are one person: never overridden by a rule."""
        self.confirmed |= pairs_of(patient_ids)

    def remove_member(self, patient_id: str, source_priority: list[str]) -> bool:
        """The patient left the group (deleted, NIK or birth date changed). A member of a running
        merge stays, marked deleted: the pipeline owns it until the merge completes."""
        if patient_id not in self.members:
            return False
        request = self.request
        if request and request.status == RequestStatus.RUNNING and patient_id in request.participants:
            self.members[patient_id]["status"] = str(MemberStatus.DELETED)
            return True
        del self.members[patient_id]
        if request and request.status == RequestStatus.OPEN:
            if patient_id in request.duplicates:
                request.duplicates.remove(patient_id)
            if patient_id == request.master and request.duplicates:
                request.master = select_master(self.members, request.duplicates, source_priority)
                request.duplicates.remove(request.master)
            if not request.duplicates:
                self.request = None
        if self.master == patient_id:
            self.master = self.request.master if self.request else None
        return True
