"""No chains: a patient is never a duplicate in one merge while it is the master (or a duplicate) of
another, and a merge never links a master that is itself replaced. Pure.

A patient can be in several groups at once (its NIK group, its demographic block, the NIK groups it
joined through a demographic match: ``PatientKeys.all_groups``), and each group runs its own request.
Two requests sharing a patient must not run at the same time, or the finished merges can leave
A -> B -> C (B replaced by C while A points at B). The fan-out's claim checks the other groups
(``claim_conflicts``); the finaliser checks what FHIR holds before it links (``chain_in_patients``).

A participant another group's merge already *completed* (marked merged there) is no reason to wait:
it stays merged, so a claim that waited for it would wait until the sweeper fails the request. It leaves
the open request instead, before the claim (``settle_merged_participants``): the record it was merged
into takes its place as master when it takes part, and a request left with nothing to merge goes. Two
groups' requests share a patient when one person spans two groups (a record matched across NIK groups
by a one-digit NIK typo, a NIK-less record matched to two NIK holders); whichever runs first, the other
then merges only what is left.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from shared.domain.group import Group, MemberStatus
from shared.domain.master import golden_members, select_master
from shared.domain.merge_request import RequestStatus


def claim_conflicts(group_id: str, participants: Iterable[str], others: Mapping[str, Group]) -> list[str]:
    """The participants another group (``others``: group id -> group, the participants' other groups)
    holds in its running request, or already marked merged (a claim that did not settle them first):
    this request must not run now."""
    conflicts = set()
    for other_id, other in others.items():
        if other_id == group_id:
            continue
        for pid in participants:
            if other.holds_in_running_request(pid) or other.status_of(pid) == MemberStatus.MERGED:
                conflicts.add(pid)
    return sorted(conflicts)


def merged_elsewhere(group_id: str, participants: Iterable[str], others: Mapping[str, Group]) -> dict[str, str | None]:
    """The participants another group marks merged, with the record that replaced them there."""
    merged: dict[str, str | None] = {}
    for other_id, other in sorted(others.items()):
        for pid in participants:
            if other_id != group_id and pid not in merged and other.status_of(pid) == MemberStatus.MERGED:
                merged[pid] = (other.members.get(pid) or {}).get("replaced_by")
    return merged


def settle_merged_participants(group: Group, request_id: str, merged: Mapping[str, str | None],
                               source_priority: Sequence[str]) -> list[str]:
    """Participants of this *open* request that another group's merge replaced (``merged``, from
    ``merged_elsewhere``) leave it, marked merged here as there. The record one of them was merged into,
    when it takes part, is a golden master in the store: it becomes this request's master (once a
    master, always the master). With nobody left to merge the request goes, as when its members leave
    (``Group.remove_member``). Returns the participants that left."""
    request = group.request
    if not request or request.id != request_id or request.status != RequestStatus.OPEN:
        return []
    leaving = sorted(pid for pid in request.participants if pid in merged)
    if not leaving:
        return []
    for pid in leaving:
        group.members.setdefault(pid, {}).update(status=str(MemberStatus.MERGED), active=False, golden=False,
                                                 replaced_by=merged[pid])
    remaining = [pid for pid in (request.master, *request.duplicates) if pid not in merged]
    survivors = sorted({merged[pid] for pid in leaving} & set(remaining))
    for pid in survivors:
        group.members[pid].update(golden=True, active=True)
    if len(remaining) < 2:
        group.request = None
        for pid in remaining:
            if not group.members[pid].get("golden"):
                group.set_status(pid, MemberStatus.ACTIVE)
        golden = golden_members(group.members, group.members)
        group.master = golden[0] if golden else None
        return leaving
    if request.master not in remaining or survivors:
        request.master = select_master(group.members, survivors or remaining, source_priority)
    request.duplicates = sorted(pid for pid in remaining if pid != request.master)
    group.master = request.master
    group.set_status(request.master, MemberStatus.MASTER)
    return leaving


def _links(patient: Mapping, link_type: str) -> set[str]:
    return {((link.get("other") or {}).get("reference") or "").removeprefix("Patient/")
            for link in patient.get("link") or [] if link.get("type") == link_type}


def chain_in_patients(master: Mapping, duplicates: Iterable[Mapping], merged_ids: Iterable[str]) -> str | None:
    """Why linking these patients (as FHIR holds them now) would write a chain, or None: the master is
    itself replaced by someone, a duplicate is replaced by someone other than this master, or a
    duplicate is already the master of others (``replaces`` links to patients outside this merge)."""
    ours = set(merged_ids) | {master.get("id")}
    if _links(master, "replaced-by"):
        return "master-is-replaced"
    for duplicate in duplicates:
        if _links(duplicate, "replaced-by") - {master.get("id")}:
            return "duplicate-replaced-by-another"
        if _links(duplicate, "replaces") - ours:
            return "duplicate-is-a-master"
    return None
