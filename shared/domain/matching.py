"""What one incoming member means for its group. Pure.

``plan_nik_group`` (here) / ``plan_demographic_group`` (``shared.domain.demographic_plan``) decide, from the
pair rules (``shared.domain.pair_rules``) over the group's live members: which members to merge into which
master, which pairs go to review, and each member's new status. ``GroupPlan`` is what both answer. A wrong
merge is worse than a missed one: what is not sure goes to review.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from shared.config import Settings
from shared.domain.group import Group, is_live
from shared.domain.households import shares_phone_address_or_home
from shared.domain.master import select_master
from shared.domain.merge_request import RequestStatus
from shared.domain.pair_rules import (
    MERGE,
    REVIEW,
    Decision,
    compare_nik_pair,
)
from shared.linkage.model import MatchModel


@dataclass
class ReviewProposal:
    patient_ids: tuple[str, ...]
    reason: str
    evidence: dict


@dataclass
class GroupPlan:
    master: str | None = None  # merge target (None: no merge)
    duplicates: list[str] = field(default_factory=list)
    reason: str | None = None
    evidence: dict = field(default_factory=dict)
    reviews: list[ReviewProposal] = field(default_factory=list)
    statuses: dict[str, tuple[str, str]] = field(default_factory=dict)  # pid -> (status, reason)
    decisions: dict[str, Decision] = field(default_factory=dict)  # other pid -> decision vs incoming
    # The records under other NIKs of the group's first 12 digits (``pair_rules.nik_neighbours``): a
    # namesake among them living with one record of a pair makes the pair's NIK a human decision.
    neighbours: tuple[dict, ...] = ()


def human_flags(group: Group, a: str, b: str) -> dict:
    """What humans decided about the pair (``compare_*_pair``'s ``confirmed`` / ``rejected``)."""
    return {"confirmed": group.is_confirmed(a, b), "rejected": group.is_rejected(a, b)}


def _nik_flags(group: Group, plan: GroupPlan, a: str, b: str) -> dict:
    return human_flags(group, a, b) | {"neighbours": plan.neighbours}


def _reference(group: Group, live: dict[str, Mapping], settings: Settings) -> str | None:
    """The record an adult newcomer is compared with: the group's master when it is live,
    otherwise the best live adult by master selection (so arrival order does not decide)."""
    master = group.master
    if master in live and not live[master].get("is_baby"):
        return master
    adults = [pid for pid, m in live.items() if not m.get("is_baby")]
    return select_master(live, adults, settings.source_priority) if adults else None


def _merged_into(group: Group, target: str, plan: GroupPlan) -> list[str]:
    """NIK-bearing adult records already decided to be ``target``: its open or running request's
    duplicates, members pending for it, members merged into it, and this plan's duplicates."""
    members = group.members
    request = group.request
    ids = set(plan.duplicates)
    if request and request.master == target and request.in_progress:
        ids.update(request.duplicates)
    for pid, member in members.items():
        if (member.get("status") == "pending" and group.master == target) or (
                member.get("status") == "merged" and member.get("replaced_by") == target):
            ids.add(pid)
    return sorted(pid for pid in ids - {target}
                  if pid in members and members[pid].get("kind") == "nik" and not members[pid].get("is_baby"))


# Reviews a record already merged into the target can settle: a near name (the typo is the master's), or
# a NIK prone to collisions (placeholder date, another home, a namesake one typo away) without a shared
# phone/address with the master but with one of its records.
_COLLISIONS = frozenset({"nik-home-conflict", "nik-namesake-nearby", "nik-serial-lost"})
_BRIDGEABLE = frozenset({"name-mismatch", "nik-placeholder-date", *_COLLISIONS})


def _match_via_duplicate(group: Group, member_id: str, target: str, decision: Decision, plan: GroupPlan,
                         settings: Settings, model: MatchModel | None = None) -> Decision | None:
    """A record one name-threshold short of the master (same NIK, no field conflict, NIK issues
    alike: ``name-mismatch``) that fully matches a record already merged into that master is the
    same person: the typo is the master's ("Widodo Nagraha" master, "Widodo Nugraha" on both
    others). The second pair passes every rule on its own; nothing weaker than a nik-match counts.
    A record whose home or namesake made its NIK doubtful joins only through a record it lives with."""
    members = group.members
    for via in _merged_into(group, target, plan):
        if via == member_id:
            continue
        if decision.reason in _COLLISIONS and not shares_phone_address_or_home(members[member_id], members[via]):
            continue
        bridge = compare_nik_pair(members[member_id], members[via], settings, model=model,
                                  **_nik_flags(group, plan, member_id, via))
        if bridge.outcome == MERGE and bridge.reason == "nik-match":
            rule = "nik-match-via-duplicate"
            return Decision(MERGE, rule, decision.evidence | {
                "rule": rule, "via": {"patients": sorted((member_id, via)), **bridge.evidence}})
    return None


def _bridge_waiting_reviews(group: Group, live: Mapping, plan: GroupPlan, considered: set[str],
                            settings: Settings, take, model: MatchModel | None = None) -> None:
    target = plan.master
    while True:
        bridged = False
        for pid, member in sorted(live.items()):
            if (pid in considered or pid == target or pid in plan.duplicates or member.get("is_baby")
                    or member.get("status") != "review" or member.get("reason") not in _BRIDGEABLE):
                continue
            decision = compare_nik_pair(member, live[target], settings, model=model,
                                        **_nik_flags(group, plan, pid, target))
            if decision.outcome != REVIEW or decision.reason not in _BRIDGEABLE:
                continue
            via = _match_via_duplicate(group, pid, target, decision, plan, settings, model)
            if via:
                take(pid, target, via)
                considered.add(pid)
                bridged = True
        if not bridged:
            return


def _match_beside_a_stranger(group: Group, live: Mapping, incoming: str, reference: str, plan: GroupPlan,
                             settings: Settings, model: MatchModel | None = None) -> None:
    """The best record of a master-less group is someone else (a NIK typed onto the wrong person's
    record: ``nik-conflict``). The newcomer is then compared with the group's other adults too, so
    the NIK owner's own records still merge with each other; only full ``nik-match`` pairs count."""
    matched = []
    for pid, member in sorted(live.items()):
        if pid in (incoming, reference) or member.get("is_baby") or member.get("status", "active") not in (
                "active", "review"):
            continue
        decision = compare_nik_pair(live[incoming], member, settings, model=model,
                                    **_nik_flags(group, plan, incoming, pid))
        if decision.outcome == MERGE and decision.reason == "nik-match":
            matched.append((pid, decision))
    if not matched:
        return
    master = select_master(live, [incoming, *(pid for pid, _ in matched)], settings.source_priority)
    plan.master, plan.reason = master, "nik-match"
    plan.statuses.pop(incoming, None)
    plan.duplicates = [pid for pid in [incoming, *(pid for pid, _ in matched)] if pid != master]
    plan.evidence["pairs"] = [{"patients": sorted((incoming, pid)), **decision.evidence} for pid, decision in matched]


def _same_cluster(decision: Decision) -> bool:
    return decision.outcome == MERGE or (decision.outcome == REVIEW and decision.reason != "nik-conflict")


def plan_nik_group(group: Group, incoming: str, settings: Settings, model: MatchModel | None = None,
                   neighbours: tuple[dict, ...] = ()) -> GroupPlan:
    """What the (already stored) incoming member means for its NIK group."""
    members = group.members
    # Members without a NIK joined through a demographic match are never compared here.
    live = {pid: m for pid, m in members.items() if is_live(m) and m.get("kind") != "none"}
    plan = GroupPlan(neighbours=neighbours)
    newcomer = members.get(incoming)
    if not is_live(newcomer) or incoming not in live:
        return plan
    has_master = group.master in live

    if newcomer.get("is_baby"):
        # Babies are compared with every other member: adults give no-match (never the mother),
        # babies give review / twins / different babies; only a human confirmation merges.
        for pid, other in sorted(live.items()):
            if pid == incoming:
                continue
            decision = compare_nik_pair(newcomer, other, settings, model=model,
                                        **_nik_flags(group, plan, incoming, pid))
            plan.decisions[pid] = decision
            if decision.outcome == REVIEW:
                plan.reviews.append(ReviewProposal(tuple(sorted((incoming, pid))), decision.reason,
                                                   decision.evidence))
            elif decision.outcome == MERGE and not plan.master:
                plan.master, plan.duplicates = pid, [incoming]
                plan.reason, plan.evidence = "human-confirmed", decision.evidence
        status = "duplicate" if plan.master else "review" if plan.reviews else "active"
        plan.statuses[incoming] = (status, plan.reviews[0].reason if plan.reviews else None)
        return plan

    reference = _reference(group, live, settings)
    if reference is None:
        return plan
    if reference != incoming:
        pairs = [(incoming, reference)]
    elif not has_master:
        # The newcomer is the best record: every waiting adult is compared with it.
        pairs = [(pid, incoming) for pid, m in sorted(live.items())
                 if pid != incoming and not m.get("is_baby") and m.get("status", "active") in ("active", "review")]
    else:
        pairs = []  # the master itself changed: nothing to decide
    def take(member_id: str, target: str, decision: Decision) -> None:
        plan.decisions[member_id if target == incoming else target] = decision
        if decision.outcome == MERGE:
            plan.master = target
            plan.duplicates.append(member_id)
            plan.reason = plan.reason or "nik-match"
            plan.evidence.setdefault("pairs", []).append({"patients": sorted((member_id, target)),
                                                          **decision.evidence})
        elif decision.outcome == REVIEW:
            # One item for the candidate cluster: members already waiting in review that this record matches
            # or nearly matches (not a clearly different name) are named with it; a reviewer decides them
            # together.
            same = [pid for pid, other in sorted(live.items())
                    if _same_cluster(decision) and pid not in (member_id, target)
                    and other.get("status") == "review" and not other.get("is_baby")
                    and _same_cluster(compare_nik_pair(live[member_id], other, settings, model=model,
                                                       **_nik_flags(group, plan, member_id, pid)))]
            plan.reviews.append(ReviewProposal(tuple(sorted((member_id, target, *same))), decision.reason,
                                               decision.evidence | ({"waiting_with": sorted(same)} if same else {})))
            plan.statuses[member_id] = ("review", decision.reason)
        else:
            plan.statuses.setdefault(member_id, ("active", decision.reason))

    # Pairs that only missed the name threshold wait: they may match a record already merged into
    # the target (see ``_match_via_duplicate``), including one this plan merges.
    near: list[tuple[str, str, Decision]] = []
    for member_id, target in pairs:
        member = live[member_id]
        if member.get("status") in ("duplicate", "pending"):
            continue  # already on its way into this master
        decision = compare_nik_pair(member, live[target], settings, model=model,
                                    **_nik_flags(group, plan, member_id, target))
        if decision.outcome == REVIEW and decision.reason in _BRIDGEABLE:
            near.append((member_id, target, decision))
        else:
            take(member_id, target, decision)
    if (reference != incoming and not has_master and not plan.master and not near
            and plan.decisions.get(reference) is not None and plan.decisions[reference].reason == "nik-conflict"
            and (group.request is None or group.request.status == RequestStatus.DONE)):
        _match_beside_a_stranger(group, live, incoming, reference, plan, settings, model)
    near_ids = {m for m, _, _ in near}
    while near:
        bridged = [(m, t, via) for m, t, d in near
                   if (via := _match_via_duplicate(group, m, t, d, plan, settings, model))]
        for member_id, target, decision in bridged:
            take(member_id, target, decision)
        done = {m for m, _, _ in bridged}
        near = [item for item in near if item[0] not in done]
        if not bridged:
            break
    for member_id, target, decision in near:
        take(member_id, target, decision)
    if plan.master:
        # A new duplicate may bridge members left in review earlier for the same near miss; their
        # review item stays for the record, a human rejection (do_not_match) still wins.
        _bridge_waiting_reviews(group, live, plan, near_ids | {incoming}, settings, take, model)
    if reference == incoming and incoming not in plan.statuses and not plan.master:
        plan.statuses[incoming] = ("active", None)
    if plan.master and plan.evidence:
        plan.reason = "human-confirmed" if all(
            p.get("rule") == "human-confirmed" for p in plan.evidence["pairs"]) else "nik-match"
    return plan
