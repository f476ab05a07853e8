"""What one patient record, or one human confirmation, does to a group. Pure: runs inside the group's
transaction (``GroupRepository.transact``) on the loaded ``Group``, and returns what the caller must do
next (review items to propose, a NIK group to join, a request to publish).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from shared.config import Settings
from shared.domain.demographic_plan import plan_demographic_group
from shared.domain.group import Group, MemberStatus, is_live
from shared.domain.master import select_master
from shared.domain.matching import ReviewProposal, plan_nik_group
from shared.domain.merge_request import MergeRequest, RequestPlan
from shared.domain.pair_rules import MERGE, compare_nik_pair, is_twin_pair
from shared.domain.patient import is_newer
from shared.linkage.model import MatchModel

MATCHING = "matching"   # requested_by of what the rules decide
_VERSION_FIELDS = ("version", "last_updated")


@dataclass(frozen=True)
class CrossJoin:
    """A NIK-less record matched to a NIK holder in a demographic block: it joins the holder's NIK group,
    so one person has one request and one master."""
    group: str
    anchor_id: str
    newcomer_id: str
    newcomer: dict
    evidence: dict


@dataclass
class MemberApplied:
    changed: bool
    request: MergeRequest | None = None
    reviews: list[ReviewProposal] = field(default_factory=list)
    cross: CrossJoin | None = None
    decided: frozenset[str] = frozenset()   # candidates this group compared the record with
    full: bool = False                      # a candidate block at its member cap: the record was not added


@dataclass
class Confirmation:
    request: MergeRequest | None
    refused: dict[str, str] = field(default_factory=dict)   # patient id -> rule that refused it


def apply_member(group: Group, patient_id: str, record: dict, own_write: bool, settings: Settings,
                 model: MatchModel | None = None, skip: frozenset[str] = frozenset(),
                 merged_into: frozenset[str] = frozenset(), neighbours: tuple[dict, ...] = (),
                 expected: Mapping[str, Mapping] | None = None) -> MemberApplied:
    """Stores the record as a member unless the stored one is as new (``changed=False``), then runs the
    group's rules for it: statuses, review proposals, and a merge request opened or joined. ``skip``:
    candidates an earlier group of the same event decided (a pair is decided in one group only);
    ``merged_into``: NIK tokens (or ``patient:<id>``) an earlier block of the event merged the record into;
    ``neighbours``: for a NIK group, the records under other NIKs of its first 12 digits (``pair_rules``);
    ``expected``: for a block, a batch's records of the newcomer's blocks (``rival_identity``)."""
    members = group.members
    stored = members.get(patient_id)
    if stored and not is_newer(record["version"], record["last_updated"], stored):
        return MemberApplied(False, group.request)
    if stored is None and not group.is_nik and len(members) >= settings.block_member_cap:
        # A block this large is no evidence (a placeholder birth date, a very common name): the
        # record's other keys find its candidates; the document stays far below Firestore's 1 MiB.
        return MemberApplied(False, group.request, full=True)
    status = (stored or {}).get("status", MemberStatus.ACTIVE)
    if record["replaced_by"]:
        status = MemberStatus.MERGED
    elif record["golden"]:
        status = MemberStatus.MASTER
        if not (group.request and group.request.in_progress):
            group.master = patient_id
    elif status in (MemberStatus.MERGED, MemberStatus.DELETED):
        status = MemberStatus.ACTIVE  # re-activated (an unmerge restored it) or re-created
    members[patient_id] = {**(stored or {}), **record, "status": str(status)}
    if own_write:
        return MemberApplied(True, group.request)

    plan = plan_nik_group(group, patient_id, settings, model, neighbours) if group.is_nik else \
        plan_demographic_group(group, patient_id, settings, model, skip, merged_into, expected)
    for pid, (new_status, reason) in plan.statuses.items():
        if pid in members and members[pid].get("status") not in ("master", "duplicate", "pending"):
            members[pid]["status"] = new_status
            members[pid]["reason"] = reason
    applied = MemberApplied(True, group.request, list(plan.reviews), decided=frozenset(plan.decisions))
    if not plan.master:
        return applied
    target, newcomer = members[plan.master], members[plan.duplicates[0]]
    nik_holder = next((m for m in (target, newcomer) if m.get("nik_token")), None)
    if not group.is_nik and nik_holder is not None:
        anchor_id = plan.master if target.get("nik_token") else plan.duplicates[0]
        other_id = plan.duplicates[0] if anchor_id == plan.master else plan.master
        members[other_id]["status"] = str(MemberStatus.DUPLICATE)
        applied.cross = CrossJoin(f"nik_index/{nik_holder['nik_token']}", anchor_id, other_id,
                                  dict(members[other_id]), plan.evidence)
    else:
        applied.request = group.open_request(RequestPlan(plan.master, tuple(plan.duplicates),
                                                         plan.reason or "match", MATCHING, plan.evidence))
    return applied


@dataclass
class Joined:
    request: MergeRequest | None
    reviews: list[ReviewProposal] = field(default_factory=list)


def person_records(group: Group, target: str) -> set[str]:
    """``target`` and the group's records already decided to be the same person: merged into it,
    duplicates of its open or running request, members pending for it."""
    members, request = group.members, group.request
    ids = {target}
    if request and request.master == target and request.in_progress:
        ids.update(request.duplicates)
    for pid, member in members.items():
        if (member.get("status") in ("pending", "duplicate") and group.master == target) or (
                member.get("status") == "merged" and member.get("replaced_by") == target):
            ids.add(pid)
    return {pid for pid in ids if pid in members}


def join_nik_group(group: Group, join: CrossJoin) -> Joined:
    """The NIK group's side of a ``CrossJoin``: the newcomer is merged into the group's live master (or
    the anchor when there is none) only when the record it matched *is* that person (the master or a
    record merged into it) and no record of that person is its twin. Otherwise the NIK the anchor
    carries belongs to someone else (a NIK typed onto another person's record), or the anchor's person
    is a twin of the newcomer: a human decides."""
    members = group.members
    if (members.get(join.newcomer_id) or {}).get("status") == MemberStatus.MERGED:
        return Joined(group.request)
    members[join.newcomer_id] = {**join.newcomer,
                                 "status": members.get(join.newcomer_id, {}).get("status", MemberStatus.ACTIVE)}
    master = group.master
    if not is_live(members.get(master)):
        master = join.anchor_id
    person = person_records(group, master)
    refusal = None
    if join.anchor_id not in person:
        refusal = "nik-holder-not-master"
    elif any(is_twin_pair(members[join.newcomer_id], members[pid]) for pid in person):
        refusal = "twins"
    if refusal:
        members[join.newcomer_id]["status"] = str(MemberStatus.REVIEW)
        members[join.newcomer_id]["reason"] = refusal
        ids = tuple(sorted({join.newcomer_id, join.anchor_id, master}))
        return Joined(group.request, [ReviewProposal(ids, refusal, join.evidence | {"rule": refusal})])
    return Joined(group.open_request(RequestPlan(master, (join.newcomer_id,), "demographic-match", MATCHING,
                                                 join.evidence)))


def confirm_members(group: Group, confirmed: list[str], *, reason: str, requested_by: str,
                    settings: Settings, master: str | None = None, model: MatchModel | None = None) -> Confirmation:
    """Human-confirmed ids: recorded as confirmed pairs and merged into one master, except where the
    newborn/twin rules refuse (those never merge, whoever asks). ``model`` decides a confirmed record
    against a group master the human did not name (the current model, as for any other decision)."""
    members = group.members
    request = group.request
    result = Confirmation(request)
    if not group.is_nik and request and request.in_progress and not (set(confirmed) & request.participants):
        # A birth-date/gender block holds different people: its open request (someone else's merge)
        # must not absorb this pair. The reviewer approves again once that merge is done.
        result.refused.update({pid: "block-request-busy" for pid in confirmed})
        return result
    group.confirm(confirmed)
    live = [pid for pid in confirmed if is_live(members.get(pid))]
    # In a NIK group the group's master is the adult holder's master; newborns on the mother's NIK and a
    # demographic block (different people) take a master among the confirmed records.
    babies = any(members.get(pid, {}).get("is_baby") for pid in live)
    chosen = master if master in live and not members[master].get("is_baby") else None
    master = group.master if group.is_nik and not babies and is_live(members.get(group.master)) else None
    if chosen and (master is None or not members[master].get("golden")):
        # A reviewer's choice of master, unless the group already has a golden one (once a master,
        # always the master: references never move back and forth).
        master = chosen
    else:
        chosen = None
    if master is None:
        adults = [pid for pid in live if not members[pid].get("is_baby")] or live
        if not adults:
            return result
        master = select_master(members, adults, settings.source_priority)
    duplicates, evidence = [], {"pairs": [], "requested": len(confirmed)}
    if chosen:
        evidence["master_chosen_by"] = requested_by
    for pid in live:
        if pid == master or members[pid].get("status") in ("duplicate", "pending"):
            continue
        decision = compare_nik_pair(members[pid], members[master], settings,
                                    confirmed=group.is_confirmed(pid, master), model=model)
        if decision.outcome == MERGE:
            duplicates.append(pid)
            evidence["pairs"].append({"patients": sorted((pid, master)), **decision.evidence})
        else:
            result.refused[pid] = decision.reason
    if duplicates:
        result.request = group.open_request(RequestPlan(master, tuple(duplicates), reason, requested_by, evidence))
        if chosen and result.request.master == chosen:
            result.request.fixed_master = True   # the claim keeps a human's choice
    return result


def already_recorded(group: Group | None, patient_id: str, record: Mapping) -> bool:
    """Whether the group already holds this record but for its version (a merge's own write: the status
    the write implies was set when the merge completed)."""
    stored = (group.members if group else {}).get(patient_id)
    if not stored:
        return False
    expected = MemberStatus.MERGED if record["replaced_by"] else MemberStatus.MASTER
    return stored.get("status") == expected and all(
        stored.get(key) == value for key, value in record.items() if key not in _VERSION_FIELDS)

