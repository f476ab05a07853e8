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
person, else ``resolved-by-<cause>`` when a human decision (or an unmerge) settled one, else
``superseded``. An item also closes as ``superseded`` when the same change creates an item that asks
about the same patients or more (one item per candidate cluster: the newer question replaces it). An
item a human is deciding in the same transaction is left to that decision.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from shared.domain.group import Group, MemberStatus, is_live, pair_key
from shared.domain.review import ReviewItem, ReviewStatus

RESOLVED_BY_MERGE = "resolved-by-merge"
RESOLVED_BY_DECISION = "resolved-by-decision"
RESOLVED_BY_UNMERGE = "resolved-by-unmerge"
SUPERSEDED = "superseded"
CLOSING_REASONS = (RESOLVED_BY_MERGE, RESOLVED_BY_DECISION, RESOLVED_BY_UNMERGE, SUPERSEDED)
# What a transaction can name as its cause (``GroupTransaction.cause``) and the reason it then records.
_CAUSE_REASONS = {"decision": RESOLVED_BY_DECISION, "unmerge": RESOLVED_BY_UNMERGE}
_CHAIN_LIMIT = 8   # replaced_by hops followed (a chain longer than this is not resolved here)


def person_of(group: Group, patient_id: str) -> str:
    """The record this patient is (or is being) merged into within the group; itself otherwise."""
    current = patient_id
    for _ in range(_CHAIN_LIMIT):
        member = group.members.get(current) or {}
        if member.get("status") == MemberStatus.MERGED and member.get("replaced_by"):
            current = member["replaced_by"]
            continue
        break
    request = group.request
    if request and request.in_progress and current in request.duplicates:
        return request.master
    if (group.members.get(current) or {}).get("status") == MemberStatus.PENDING and group.master:
        return group.master
    return current


def pair_settlement(group: Group, a: str, b: str) -> str | None:
    """How the pair was settled (``merge``, ``decision``, ``gone``), or None while it is open."""
    if a in group.members and b in group.members and person_of(group, a) == person_of(group, b):
        return "merge"
    if pair_key(a, b) in group.do_not_match:
        # (A confirmed pair settles once its merge request opens, as ``merge``: one the newborn or twin
        # rules refused stays open, and so does its item, for a supervisor.)
        return "decision"
    if not is_live(group.members.get(a)) or not is_live(group.members.get(b)):
        return "gone"
    return None


def closing_reason(group: Group, item: ReviewItem, cause: str | None = None) -> str | None:
    """Why the item no longer needs a human (one of ``CLOSING_REASONS``), or None while it does."""
    ids = sorted(set(item.patient_ids))
    settled = [pair_settlement(group, a, b) for i, a in enumerate(ids) for b in ids[i + 1:]]
    if not settled or None in settled:
        return None
    if "merge" in settled:
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
        reason = closing_reason(group, item, cause)
        if reason is None and any(set(item.patient_ids) <= ids for ids in newer):
            reason = SUPERSEDED
        if reason is None:
            continue
        item.status = ReviewStatus.CLOSED
        item.decision.update({"closed_reason": reason, "closed_at": now, "closed_by": by or cause or "index"})
        closed.append(item)
    return closed


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
    the transaction and closed; ``group.reviews`` keeps only the items still pending. Only the items of
    patients the change touched (``changed_patients`` against ``before``, the group's document when it
    was read), those it began to track and those a new item asks about again are read: a block with many
    items reads few. The repositories call it after the change, before they write (``after``: the group's
    ``to_doc()`` now, when they have it)."""
    created, deciding = set(created), set(deciding)
    if not group.reviews:
        return []
    touched = changed_patients(before, after if after is not None else group.to_doc())
    newer = [set(item.patient_ids) for item in proposed if item.id in created]
    tracked_before = before.get("reviews") or {}
    wanted = sorted(rid for rid, ids in group.reviews.items() if rid not in created and rid not in deciding
                    and (rid not in tracked_before or touched & set(ids) or any(set(ids) <= n for n in newer)))
    if not wanted:
        return []
    items = load(wanted)
    pending = [item for item in items if item.status == ReviewStatus.PENDING]
    closed = close_resolved(group, pending, proposed=proposed, created=created, deciding=deciding, cause=cause,
                            by=by, now=now)
    still = {item.id for item in pending} - {item.id for item in closed}
    for rid in set(wanted) - still:
        group.reviews.pop(rid, None)
    return closed
