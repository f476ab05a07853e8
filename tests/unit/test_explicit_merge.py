"""Explicit merges (`dedup merge`, `Patient/$merge`): any records, into the master a human chose, in the
master's group; the newborn/twin rules and earlier rejections still refuse; bad inputs fail before
anything is written."""

from __future__ import annotations

import pytest

from shared.config import Settings
from shared.domain.merge_request import RequestStatus
from shared.services.explicit_merge import (
    ExplicitMerges,
    MergeInputInvalid,
    MergeRefused,
    PatientMissing,
)
from tests.fakes import FakeServices, patient_resource

SETTINGS = Settings()
NIK_A = "3201011203850001"
NIK_B = "3201024507900002"


@pytest.fixture
def fakes():
    return FakeServices(SETTINGS)


def merges(f: FakeServices) -> ExplicitMerges:
    return ExplicitMerges(SETTINGS, f.matching, f.groups, f.keys, f.requests, f.fhir)


def create(f: FakeServices, *args, **kwargs) -> str:
    return f.fhir.create(patient_resource(SETTINGS, *args, **kwargs))["id"]


def test_two_nik_less_records_in_different_blocks_are_merged_into_the_chosen_master(fakes):
    master = create(fakes, "Sri Wahyuni", birth="1970-01-01", gender="female")
    other = create(fakes, "Wahyuni", birth="1971-02-02", gender="female")   # another block: never matched
    outcome = merges(fakes).merge(master, [other], reason="same person, checked", requested_by="ops@district")
    assert outcome.master == master and outcome.duplicates == [other] and outcome.published
    group = fakes.groups.get(outcome.group)
    assert outcome.group.startswith("demographic_index/") and set(group.members) == {master, other}
    assert group.is_confirmed(master, other)
    [message] = fakes.merge_requests_published()
    assert message["master"] == master and message["duplicates"] == [other]
    assert message["requested_by"] == "ops@district"
    assert outcome.group in fakes.keys.get(other).linked   # a later delete or change finds it there


def test_two_niks_in_the_masters_nik_group_and_the_master_is_kept_by_the_claim(fakes):
    # Sources that would elect the other record as master if the claim re-selected one.
    master = create(fakes, "Budi Santoso", NIK_A, birth="1985-03-12", source="lab")
    other = create(fakes, "Budi Santoso", NIK_B, birth="1985-03-12", source="simrs")
    outcome = merges(fakes).merge(master, [other], reason="two NIKs, one man", requested_by="ops")
    assert outcome.group.startswith("nik_index/")
    claimed = fakes.requests.claim_request(outcome.group, outcome.request_id)
    assert claimed.master == master and list(claimed.duplicates) == [other]
    assert fakes.groups.get(outcome.group).request.status == RequestStatus.RUNNING


def test_the_newborn_rule_still_refuses(fakes):
    mother = create(fakes, "Siti Aminah", NIK_B, birth="1990-07-05", gender="female")
    baby = create(fakes, "By. Ny. Siti Aminah", birth="2025-06-01", gender="female", nik_ibu=NIK_B)
    with pytest.raises(MergeRefused) as refused:
        merges(fakes).merge(mother, [baby], reason="mistake", requested_by="ops")
    assert refused.value.reasons == {baby: "baby-vs-adult"}
    assert fakes.merge_requests_published() == []


def test_a_rejected_pair_stays_refused(fakes):
    a = create(fakes, "Ahmad Fauzi", birth="1988-02-02")
    b = create(fakes, "Ahmad Fauzan", birth="1988-02-02")
    first = merges(fakes).merge(a, [b], reason="x", requested_by="ops")
    fakes.groups.transact(first.group, lambda tx: tx.group.record_unmerge(a, [b]))
    fakes.groups.transact(first.group, lambda tx: setattr(tx.group, "request", None))
    with pytest.raises(MergeRefused) as refused:
        merges(fakes).merge(a, [b], reason="again", requested_by="ops")
    assert refused.value.reasons == {b: "do-not-match"}


def test_a_busy_group_refuses_instead_of_folding_the_choice_into_another_merge(fakes):
    a = create(fakes, "Agus Salim", NIK_A, birth="1985-03-12")
    b = create(fakes, "Agus Salim", NIK_A, birth="1985-03-12")
    c = create(fakes, "Agus Salim", birth="1960-01-01")
    for pid in (a, b):   # the automation matches a and b: a request opens and is published
        fakes.matching.index_patient(fakes.fhir.read("Patient", pid))
    with pytest.raises(MergeRefused, match="group-busy"):
        merges(fakes).merge(a, [c], reason="x", requested_by="ops")


@pytest.mark.parametrize("master, duplicates, error", [
    ("a", [], MergeInputInvalid), ("a", ["a"], MergeInputInvalid), ("", ["a"], MergeInputInvalid),
])
def test_ids_are_checked_first(fakes, master, duplicates, error):
    with pytest.raises(error):
        merges(fakes).merge(master, duplicates, reason="x", requested_by="ops")


def test_unknown_inactive_and_replaced_patients_are_refused(fakes):
    master = create(fakes, "Dewi", birth="1990-01-01")
    with pytest.raises(PatientMissing, match="Patient/nope does not exist"):
        merges(fakes).check(master, ["nope"])
    inactive = create(fakes, "Dewi", birth="1990-01-01", active=False)
    with pytest.raises(MergeRefused, match="inactive"):
        merges(fakes).check(inactive, [master])
    replaced = create(fakes, "Dewi", birth="1990-01-01",
                      link=[{"type": "replaced-by", "other": {"reference": f"Patient/{master}"}}])
    with pytest.raises(MergeRefused, match="already replaced"):
        merges(fakes).check(master, [replaced])
