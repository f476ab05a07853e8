"""Which pending review items a group's change resolves, and why. Pure.

A review item asks a human about the pairs of its patients. Once a later decision in the same group has
answered every one of those pairs, the item is stale: it closes itself in the transaction of that
decision (the repositories of ``shared.ports.index`` call ``close_resolved`` before they write the
group), with the reason recorded on the item. A pair is settled when:

- its two records are now one person: merged into each other or into the same master, or both in the
  group's open or running merge request (``merge``);
- a human decided they are different people: a do-not-match pair (``decision``, or the transaction's
  cause, e.g. ``unmerge``, when that is what wrote it);
- one of the records is no longer a live member of the group: deleted, made inactive, replaced by
  (merged into) a record outside the pair, or gone to another group (``gone``).

An item with every pair settled closes as ``resolved-by-merge`` when any pair was settled by becoming one
person (merged, or about to be: in the group's open or running request), else ``resolved-by-<cause>``
when a human decision (or an unmerge) settled one, else ``superseded``. An item also closes as
``superseded`` when the same change creates an item that asks about the same patients or more (one item
per candidate cluster: the newer question replaces it). An item a human is deciding in the same
transaction is left to that decision.

A merge that has not happened yet can still fail. An item closed because its records are in the group's
open or running request names that request (``merge_request`` on the item) and the request keeps the
item's id (``MergeRequest.closed_reviews``). When the request goes without completing (released as
failed, withdrawn, or dropped), the transaction that removes it reopens those items (status ``pending``
again, ``reopened`` on the item says why, when and after which request) and tracks them again; the same
transaction then closes any of them another settlement answers (e.g. a follow-up request).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from shared.domain.group import Group, MemberStatus, is_live, pair_key
from shared.domain.merge_request import RequestStatus
from shared.domain.review import ReviewItem, ReviewStatus

RESOLVED_BY_MERGE = "resolved-by-merge"
RESOLVED_BY_DECISION = "resolved-by-decision"
RESOLVED_BY_UNMERGE = "resolved-by-unmerge"
SUPERSEDED = "superseded"
CLOSING_REASONS = (RESOLVED_BY_MERGE, RESOLVED_BY_DECISION, RESOLVED_BY_UNMERGE, SUPERSEDED)
# What a transaction can name as its cause (``GroupTransaction.cause``) and the reason it then records.
_CAUSE_REASONS = {"decision": RESOLVED_BY_DECISION, "unmerge": RESOLVED_BY_UNMERGE}
# Why an item closed by a request's coming merge is pending again (``reopened.reason`` on the item).
REOPENED_MERGE_RELEASED = "merge-released"      # the request failed and was released: no merge
REOPENED_MERGE_WITHDRAWN = "merge-withdrawn"    # the request went before its merge (an approval undone)
_CLOSING_FIELDS = ("closed_reason", "closed_at", "closed_by", "merge_request")
_CHAIN_LIMIT = 8   # replaced_by hops followed (a chain longer than this is not resolved here)


def person_of(group: Group, patient_id: str, *, in_request: bool = True) -> str:
    """The record this patient is (or is being) merged into within the group; itself otherwise.
    ``in_request=False``: merges that happened only, not those the group's request will make."""
    current = patient_id
    for _ in range(_CHAIN_LIMIT):
        member = group.members.get(current) or {}
        if member.get("status") == MemberStatus.MERGED and member.get("replaced_by"):
            current = member["replaced_by"]
            continue
        break
    if not in_request:
        return current
    request = group.request
    if request and request.in_progress and current in request.duplicates:
        return request.master
    if (group.members.get(current) or {}).get("status") == MemberStatus.PENDING and group.master:
        return group.master
    return current


def pair_settlement(group: Group, a: str, b: str) -> str | None:
    """How the pair was settled (``merge``; ``request`` when the group's request is about to merge it;
    ``decision``, ``gone``), or None while it is open."""
    if a in group.members and b in group.members and person_of(group, a) == person_of(group, b):
        merged = person_of(group, a, in_request=False) == person_of(group, b, in_request=False)
        return "merge" if merged else "request"
    if pair_key(a, b) in group.do_not_match:
        # (A confirmed pair settles once its merge request opens, as ``merge``: one the newborn or twin
        # rules refused stays open, and so does its item, for a supervisor.)
        return "decision"
    if not is_live(group.members.get(a)) or not is_live(group.members.get(b)):
        return "gone"
    return None


def _settlements(group: Group, item: ReviewItem) -> list[str | None]:
    ids = sorted(set(item.patient_ids))
    return [pair_settlement(group, a, b) for i, a in enumerate(ids) for b in ids[i + 1:]]


def closing_reason(group: Group, item: ReviewItem, cause: str | None = None) -> str | None:
    """Why the item no longer needs a human (one of ``CLOSING_REASONS``), or None while it does."""
    return _reason(_settlements(group, item), cause)


def _reason(settled: list[str | None], cause: str | None) -> str | None:
    if not settled or None in settled:
        return None
    if "merge" in settled or "request" in settled:
        return RESOLVED_BY_MERGE
    if "decision" in settled:
        return _CAUSE_REASONS.get(cause or "decision", RESOLVED_BY_DECISION)
    return SUPERSEDED


def close_resolved(group: Group, pending: Iterable[ReviewItem], *, proposed: Sequence[ReviewItem] = (),
                   created: Iterable[str] = (), deciding: Iterable[str] = (), cause: str | None = None,
                   by: str | None = None, now: str) -> list[ReviewItem]:
    """The pending items of ``group`` this change resolves, closed (status ``closed`` and the reason,
    time and cause on the item): the repository writes them with the group. ``proposed``: the items the
    change proposed (left alone), ``created`` the ids of those that did not exist yet (only a new question
    supersedes an older one: an item proposed again after it was decided or closed does not);
    ``deciding``: ids a human decides in this transaction (left alone)."""
    skip = set(deciding) | {item.id for item in proposed}
    created = set(created)
    newer = [set(item.patient_ids) for item in proposed if item.id in created]
    closed = []
    for item in pending:
        if item.id in skip or item.status != ReviewStatus.PENDING or item.group != group.id:
            continue
        settled = _settlements(group, item)
        reason = _reason(settled, cause)
        if reason is None and any(set(item.patient_ids) <= ids for ids in newer):
            reason = SUPERSEDED
        if reason is None:
            continue
        item.status = ReviewStatus.CLOSED
        item.decision.update({"closed_reason": reason, "closed_at": now, "closed_by": by or cause or "index"})
        request = group.request
        if "request" in settled and request is not None and request.in_progress:
            # The merge has not happened yet: if the request goes without completing, the item reopens.
            item.decision["merge_request"] = request.id
            request.closed_reviews = sorted({*(request.closed_reviews or ()), item.id})
        closed.append(item)
    return closed


def request_gone(group: Group, before: Mapping) -> tuple[str, list[str], str] | None:
    """The request the group held in progress before this change (``before``: its document) if the change
    removed it without completing it: (its id, the items it closed, why it went: ``merge-released`` when
    it was released as failed, ``merge-withdrawn`` otherwise). None when it is still there or done."""
    previous = before.get("request") or {}
    if previous.get("status") not in (RequestStatus.OPEN, RequestStatus.RUNNING) or not previous.get("closed_reviews"):
        return None
    now = next((r for r in (group.request, group.previous_request) if r is not None and r.id == previous["id"]), None)
    if now is not None and (now.in_progress or now.status == RequestStatus.DONE):
        return None
    released = now is not None and now.status == RequestStatus.FAILED
    why = REOPENED_MERGE_RELEASED if released else REOPENED_MERGE_WITHDRAWN
    return previous["id"], list(previous["closed_reviews"]), why


def reopen_for_request(group: Group, items: Iterable[ReviewItem], request_id: str, why: str, *,
                       now: str) -> list[ReviewItem]:
    """The items the request ``request_id`` closed (and nothing has decided since), pending again and
    tracked by the group: its merge will not happen, so their question is open again."""
    failed = group.previous_request.failed_reason \
        if group.previous_request is not None and group.previous_request.id == request_id else None
    reopened = []
    for item in items:
        if item.status != ReviewStatus.CLOSED or item.decision.get("merge_request") != request_id \
                or item.decision.get("closed_reason") != RESOLVED_BY_MERGE:
            continue
        for name in _CLOSING_FIELDS:
            item.decision.pop(name, None)
        item.status = ReviewStatus.PENDING
        item.decision["reopened"] = {"reason": why, "at": now, "merge_request": request_id,
                                     **({"failed_reason": failed} if failed else {})}
        group.reviews[item.id] = sorted(set(item.patient_ids))
        reopened.append(item)
    return reopened


def closed_by(decided: Sequence[ReviewItem]) -> str | None:
    """What to name as the closer of items a human decision resolved: the decided item."""
    return f"review-item {decided[0].id}" if decided else None


def changed_patients(before: Mapping, after: Mapping) -> set[str]:
    """The patients whose pairs' settlement this change may have moved (group documents before and after):
    members whose record changed, came or went, the participants of a request that changed, the pending
    members and masters when the master changed, the patients of pairs decided or forgotten."""
    members_before, members_after = before.get("members") or {}, after.get("members") or {}
    ids = {pid for pid in members_before.keys() | members_after.keys()
           if members_before.get(pid) != members_after.get(pid)}
    if before.get("request") != after.get("request"):
        for request in (before.get("request"), after.get("request")):
            ids |= {request.get("master"), *(request.get("duplicates") or ())} if request else set()
    if before.get("master") != after.get("master"):
        ids |= {before.get("master"), after.get("master")}
        ids |= {pid for pid, m in members_after.items() if m.get("status") == MemberStatus.PENDING}
    for field_name in ("do_not_match", "confirmed"):
        for pair in set(before.get(field_name) or ()) ^ set(after.get(field_name) or ()):
            ids |= set(pair.split("|"))
    return {pid for pid in ids if pid}


def settle_reviews(group: Group, before: Mapping, load: Callable[[list[str]], list[ReviewItem]], *,
                   proposed: Sequence[ReviewItem], created: Iterable[str], deciding: Iterable[str],
                   cause: str | None, by: str | None, now: str, after: Mapping | None = None) -> list[ReviewItem]:
    """The group's tracked pending items (``group.reviews``) this change answered, read with ``load`` in
    the transaction and closed, and the items a request that went without merging had closed, reopened
    (``request_gone``): every item the repository must write with the group. ``group.reviews`` keeps
    only the items still pending. Only the items of patients the change touched (``changed_patients``
    against ``before``, the group's document when it was read), those it began to track and those a new
    item asks about again are read: a block with many items reads few. The repositories call it after
    the change, before they write (``after``: the group's ``to_doc()`` now, when they have it)."""
    created, deciding = set(created), set(deciding)
    reopened: list[ReviewItem] = []
    if gone := request_gone(group, before):
        request_id, closed_ids, why = gone
        reopened = reopen_for_request(group, load(closed_ids), request_id, why, now=now)
    if not group.reviews:
        return []
    touched = changed_patients(before, after if after is not None else group.to_doc())
    newer = [set(item.patient_ids) for item in proposed if item.id in created]
    tracked_before = before.get("reviews") or {}
    again = {item.id for item in reopened}
    wanted = sorted(rid for rid, ids in group.reviews.items() if rid not in created and rid not in deciding
                    and rid not in again
                    and (rid not in tracked_before or touched & set(ids) or any(set(ids) <= n for n in newer)))
    if not wanted and not reopened:
        return []
    pending = [*reopened, *(item for item in (load(wanted) if wanted else []) if item.status == ReviewStatus.PENDING)]
    closed = close_resolved(group, pending, proposed=proposed, created=created, deciding=deciding, cause=cause,
                            by=by, now=now)
    still = {item.id for item in pending} - {item.id for item in closed}
    for rid in (set(wanted) | again) - still:
        group.reviews.pop(rid, None)
    return [*closed, *(item for item in reopened if item.id in still)]
