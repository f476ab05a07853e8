"""Survivorship: the master gains only what it lacks; links, tag, Provenance; exact reverts."""

import copy

from shared.domain.survivorship import (
    LIFECYCLE_SYSTEM,
    build_provenance,
    fill_master,
    link_duplicate,
    revert_duplicate,
    revert_master,
)

NIK = "https://fhir.kemkes.go.id/id/nik"
GOLDEN = "http://terminology.kemkes.go.id/sp-replaced-by"


def _master():
    return {"resourceType": "Patient", "id": "m", "meta": {"versionId": "2"}, "active": True,
            "identifier": [{"system": NIK, "value": "3171000000000001"}, {"system": "simrs", "value": "A1"}],
            "telecom": [{"system": "phone", "value": "0811"}], "gender": "female"}


def _dups():
    return [
        {"resourceType": "Patient", "id": "d1", "active": True, "birthDate": "1990-01-02",
         "identifier": [{"system": NIK, "value": "3171000000000001"},
                        {"system": "simpus", "value": "B7", "use": "usual"}],
         "telecom": [{"system": "phone", "value": "0811"}, {"system": "email", "value": "a@b.c"}],
         "address": [{"city": "Bogor", "use": "home"}]},
        {"resourceType": "Patient", "id": "d2", "birthDate": "1990-01-02", "gender": "female",
         "identifier": [{"system": "simpus", "value": "B7"}], "address": [{"city": "Bogor", "use": "old"}]},
    ]


def test_fill_master_adds_only_what_is_missing_and_never_overwrites():
    master, dups = _master(), _dups()
    new, added = fill_master(master, dups, golden_tag_system=GOLDEN, nik_system=NIK)
    assert master == _master(), "input untouched"
    assert new["identifier"] == master["identifier"] + [{"system": "simpus", "value": "B7", "use": "old"}]
    assert new["telecom"] == master["telecom"] + [{"system": "email", "value": "a@b.c"}]
    assert new["address"] == [{"city": "Bogor", "use": "home"}]
    assert new["birthDate"] == "1990-01-02" and new["gender"] == "female"
    assert new["link"] == [{"other": {"reference": "Patient/d1"}, "type": "replaces"},
                           {"other": {"reference": "Patient/d2"}, "type": "replaces"}]
    assert {"system": GOLDEN, "code": "m"} in new["meta"]["tag"]
    assert set(added) == {"link", "identifier", "telecom", "address", "birthDate", "tag"}
    again, more = fill_master(new, dups, golden_tag_system=GOLDEN, nik_system=NIK)
    assert again == new and more == {}


def test_nik_is_copied_as_is_and_disagreeing_birth_dates_are_not_filled():
    master = {"resourceType": "Patient", "id": "m"}
    dups = [{"id": "d1", "identifier": [{"system": NIK, "value": "1", "use": "official"}], "birthDate": "1990-01-01"},
            {"id": "d2", "birthDate": "1991-01-01", "gender": "male"}]
    new, added = fill_master(master, dups, golden_tag_system=GOLDEN, nik_system=NIK)
    assert new["identifier"] == [{"system": NIK, "value": "1", "use": "official"}]
    assert "birthDate" not in new and new["gender"] == "male"


def test_link_duplicate_is_idempotent_and_keeps_other_links():
    dup = {"resourceType": "Patient", "id": "d1", "active": True,
           "link": [{"other": {"reference": "Patient/z"}, "type": "seealso"}]}
    linked = link_duplicate(dup, "m")
    assert linked["active"] is False
    assert linked["link"][-1] == {"other": {"reference": "Patient/m"}, "type": "replaced-by"}
    assert link_duplicate(linked, "m") == linked
    assert revert_duplicate(linked, dup, "m") == dup


def test_revert_master_takes_out_exactly_the_additions_even_after_later_edits():
    master, dups = _master(), _dups()
    merged, added = fill_master(master, dups, golden_tag_system=GOLDEN, nik_system=NIK)
    assert revert_master(merged, added) == master
    edited = copy.deepcopy(merged)
    edited["telecom"].append({"system": "phone", "value": "0899"})  # a clinician's later change survives
    reverted = revert_master(edited, added)
    assert reverted["telecom"] == master["telecom"] + [{"system": "phone", "value": "0899"}]
    assert "link" not in reverted and reverted["meta"] == {"versionId": "2"}


def test_provenance_shape():
    provenance = build_provenance(master_id="m", master_version="5", duplicate_versions={"d2": "1", "d1": "3"},
                                  activity="merge", reason="nik-exact", requested_by="ops@district",
                                  evidence={"score": 97.5}, job_id="mr-x")
    assert provenance["target"] == [{"reference": "Patient/m/_history/5"}]
    assert provenance["entity"] == [{"role": "source", "what": {"reference": "Patient/d1/_history/3"}},
                                    {"role": "source", "what": {"reference": "Patient/d2/_history/1"}}]
    assert provenance["activity"]["coding"][0] == {"system": LIFECYCLE_SYSTEM, "code": "merge"}
    assert [a["type"]["coding"][0]["code"] for a in provenance["agent"]] == ["performer", "author"]
    assert "97.5" in provenance["extension"][0]["valueString"]
    assert provenance["recorded"]
