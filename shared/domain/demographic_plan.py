"""What one incoming member means for its candidate block (birth date + sex, name key + birth year, NIK
prefix, phone): ``plan_demographic_group``. Pure.

The NIK group's counterpart, and the ``GroupPlan`` both answer, are in ``shared.domain.matching``. Two guards
stop a single strong candidate from merging when another identity fits the newcomer as well; they are
checked in this order and neither subsumes the other (docs/matching.md, "Rival identities"):

- ``household_rival.rivals_at_home``: a review candidate under another NIK living with a newcomer without a
  NIK joins the strong candidates, which then go to a human together (``ambiguous-match``). It alone catches
  a strong candidate that has no NIK itself (``rival_identity`` needs two rival NIKs then) and a strong pair
  a human confirmed (``rival_identity`` trusts the confirmation); when both would fire it fires first.
- ``rival_identity.rivals``: any record under another NIK of the newcomer's day, sex and near name, at home
  or not, arrived or expected, that does not fold into the NIK holder (``rival-identity``).
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.config import Settings
from shared.domain.group import Group, is_live
from shared.domain.household_rival import rivals_at_home
from shared.domain.matching import GroupPlan, ReviewProposal, human_flags
from shared.domain.pair_rules import MERGE, REVIEW, Decision, compare_demographic_pair
from shared.domain.rival_identity import rival_after_merge, rivals
from shared.linkage.model import MatchModel


def _joins_another_persons_request(group: Group, target: str, incoming: str) -> bool:
    """Whether merging ``incoming`` into ``target`` inside a demographic block would add them to an
    open or running request of other patients (a NIK holder goes to its NIK group instead)."""
    members = group.members
    if (members.get(target) or {}).get("nik_token") or (members.get(incoming) or {}).get("nik_token"):
        return False
    request = group.request
    if not request or not request.in_progress:
        return False
    in_request = request.participants
    in_request |= {pid for pid, m in members.items() if m.get("status") == "pending"}
    return target not in in_request and incoming not in in_request


def plan_demographic_group(group: Group, incoming: str, settings: Settings, model: MatchModel | None = None,
                           skip: frozenset[str] = frozenset(), merged_into: frozenset[str] = frozenset(),
                           expected: Mapping[str, Mapping] | None = None) -> GroupPlan:
    """What the incoming member means for its candidate block: pairs not sharing one NIK (those are the
    NIK group's), except the ``skip`` candidates an earlier block of this event decided. A single strong
    candidate merges unless a rival identity exists (``rival_identity``) among the block's members and the
    ``expected`` records (a batch's records of the newcomer's blocks, arrived or not); several different
    strong candidates go to review, as one item."""
    members = group.members
    live = {pid: m for pid, m in members.items() if is_live(m)}
    plan = GroupPlan()
    newcomer = members.get(incoming)
    if not is_live(newcomer):
        return plan
    strong: list[tuple[str, Decision]] = []
    for pid, other in sorted(live.items()):
        if pid == incoming or pid in skip or (newcomer.get("nik_token") and
                                              newcomer.get("nik_token") == other.get("nik_token")):
            continue
        decision = compare_demographic_pair(newcomer, other, settings, model=model, **human_flags(group, incoming, pid))
        plan.decisions[pid] = decision
        if decision.outcome == MERGE:
            strong.append((pid, decision))
        elif decision.outcome == REVIEW:
            plan.reviews.append(ReviewProposal(tuple(sorted((incoming, pid))), decision.reason,
                                               decision.evidence))
    if merged_into:
        # An earlier block of this event merged the newcomer: a strong candidate of another person here
        # makes the merge ambiguous (a human decides); one of the same NIK is that person already.
        others = [(pid, d) for pid, d in strong if live[pid].get("nik_token") not in merged_into]
        if others:
            ids = tuple(sorted({incoming, *(pid for pid, _ in others)}))
            plan.reviews.append(ReviewProposal(ids, "ambiguous-match",
                                               {"rule": "ambiguous-match", "candidates": len(others) + 1}))
        strong = []
    strong += [(pid, plan.decisions[pid]) for pid in rivals_at_home(newcomer, live, strong, plan.decisions)]
    # Several strong candidates are one person only when they all carry the same NIK.
    strong_niks = {live[pid].get("nik_token") for pid, _ in strong}
    if len(strong) == 1 or (len(strong_niks) == 1 and None not in strong_niks):
        target, decision = strong[0]
        if _joins_another_persons_request(group, target, incoming):
            # A block holds many people but one request: joining it would merge two persons
            # (same name and birth date, each with a corroborated pair). A human decides.
            plan.reviews.append(ReviewProposal(tuple(sorted((incoming, target))), "block-request-busy",
                                               decision.evidence | {"rule": "block-request-busy"}))
            plan.statuses[incoming] = ("review", "block-request-busy")
            return plan
        candidates = {**(expected or {}), **live}
        rival_ids = [] if decision.reason == "human-confirmed" else rivals(
            incoming, newcomer, target, live[target], candidates.items(), settings, model)
        if rival_ids:
            # Another identity fits the newcomer as well (twins, namesakes): which one it is, a human says.
            ids = tuple(sorted({incoming, target, *rival_ids}))
            plan.reviews.append(ReviewProposal(ids, "rival-identity", decision.evidence | {
                "rule": "rival-identity", "rivals": len(rival_ids)}))
            plan.statuses[incoming] = ("review", "rival-identity")
            return plan
        plan.master, plan.duplicates = target, [incoming]
        plan.reason = "human-confirmed" if decision.reason == "human-confirmed" else "demographic-match"
        plan.evidence = {"pairs": [{"patients": sorted((incoming, target)), **decision.evidence}]}
    elif strong:
        ids = tuple(sorted({incoming, *(pid for pid, _ in strong)}))
        plan.reviews.append(ReviewProposal(ids, "ambiguous-match",
                                           {"rule": "ambiguous-match", "candidates": len(strong)}))
    for ids in rival_after_merge(incoming, newcomer, members, settings, model):
        plan.reviews.append(ReviewProposal(ids, "rival-after-merge", {"rule": "rival-after-merge"}))
    plan.reviews = one_item_per_cluster(incoming, plan.reviews)
    status = "review" if plan.reviews and not plan.master else "active"
    plan.statuses[incoming] = (status, plan.reviews[0].reason if plan.reviews and not plan.master else None)
    return plan


def one_item_per_cluster(incoming: str, reviews: list[ReviewProposal]) -> list[ReviewProposal]:
    """The newcomer's review candidates in one block are one question for a human ("which of these, if any,
    is this record?"): one item naming the newcomer and every candidate, under the reason and evidence of
    the strongest pair (highest model evidence weight), with each candidate's reason and weight. A
    reviewer approves the records that are one person (``ReviewService.approve(patient_ids=...)``) and
    rejects the rest."""
    pairs = [r for r in reviews if len(r.patient_ids) == 2 and incoming in r.patient_ids]
    if len(pairs) < 2:
        return reviews
    others = [r for r in reviews if r not in pairs]

    def weight(proposal: ReviewProposal) -> float:
        return float(((proposal.evidence or {}).get("model") or {}).get("evidence_weight") or 0.0)

    strongest = max(pairs, key=weight)
    candidates = [{"patient": next(p for p in r.patient_ids if p != incoming), "reason": r.reason,
                   "evidence_weight": round(weight(r), 3)} for r in pairs]
    ids = tuple(sorted({pid for r in pairs for pid in r.patient_ids}))
    return [ReviewProposal(ids, strongest.reason, strongest.evidence | {"candidates": candidates}), *others]
