"""No chains: a patient is never a duplicate in one merge while it is the master (or a duplicate) of
another, and a merge never links a master that is itself replaced. Pure.

A patient can be in several groups at once (its NIK group, its demographic block, the NIK groups it
joined through a demographic match: ``PatientKeys.all_groups``), and each group runs its own request.
Two requests sharing a patient must not run at the same time, or the finished merges can leave
A -> B -> C (B replaced by C while A points at B). The fan-out's claim checks the other groups
(``claim_conflicts``); the finaliser checks what FHIR holds before it links (``chain_in_patients``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from shared.domain.group import Group, MemberStatus


def claim_conflicts(group_id: str, participants: Iterable[str], others: Mapping[str, Group]) -> list[str]:
    """The participants another group (``others``: group id -> group, the participants' other groups)
    holds in its running request or already marked merged: this request must not run now."""
    conflicts = set()
    for other_id, other in others.items():
        if other_id == group_id:
            continue
        for pid in participants:
            if other.holds_in_running_request(pid) or other.status_of(pid) == MemberStatus.MERGED:
                conflicts.add(pid)
    return sorted(conflicts)


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
