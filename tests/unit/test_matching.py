"""Matching rules over real patient facts (pure: no servers)."""

from __future__ import annotations

import pytest

from shared.config import Settings
from shared.domain.demographic_plan import plan_demographic_group
from shared.domain.group import Group
from shared.domain.master import select_master
from shared.domain.matching import plan_nik_group
from shared.domain.merge_request import RequestPlan
from shared.domain.pair_rules import (
    MERGE,
    NO_MATCH,
    REVIEW,
    compare_demographic_pair,
    compare_nik_pair,
    nik_neighbours,
)
from shared.domain.patient import is_newer, member_record, patient_facts
from shared.domain.places import place_words

SETTINGS = Settings()
# The deterministic rules alone (the model's automatic merges off): the rule tests below check the rules'
# own outcomes; the model's decisions over them are tested in "model decisions" and test_linkage_model.py.
RULES_ONLY = Settings(model_merge_weight=float("inf"))
# 32 01 01 | 15 05 90 | 0001 : a man born 1990-05-15; women add 40 to the day.
NIK_MAN = "3201011505900001"
NIK_WOMAN = "3201015505900002"  # a woman born 1990-05-15
NIK_MOTHER = "3201014103880003"  # a woman born 1988-03-01


def patient(pid, name="Budi Santoso", birth="1990-05-15", gender="male", nik=NIK_MAN, *, nik_ibu=None,
            multiple=None, phone=None, address=None, version="1", updated="2024-01-01T00:00:00Z",
            source=None, golden=False, replaced_by=None, active=True, other_id=None):
    resource = {"resourceType": "Patient", "id": pid, "active": active,
                "meta": {"versionId": version, "lastUpdated": updated}}
    if name:
        resource["name"] = [{"text": name}]
    if birth:
        resource["birthDate"] = birth
    if gender:
        resource["gender"] = gender
    identifiers = []
    if nik:
        identifiers.append({"system": SETTINGS.nik_system, "value": nik})
    if nik_ibu:
        identifiers.append({"system": SETTINGS.nik_ibu_system, "value": nik_ibu})
    if other_id:
        identifiers.append({"system": "urn:simrs:mrn", "value": other_id})
    if identifiers:
        resource["identifier"] = identifiers
    if multiple is not None:
        resource["multipleBirthInteger"] = multiple
    if phone:
        resource["telecom"] = [{"system": "phone", "value": phone}]
    if address:
        resource["address"] = [{"line": [address]}]
    if source:
        resource["meta"]["source"] = f"urn:source:{source}"
    if golden:
        resource["meta"]["tag"] = [{"system": SETTINGS.golden_tag_system, "code": pid}]
    if replaced_by:
        resource["link"] = [{"other": {"reference": f"Patient/{replaced_by}"}, "type": "replaced-by"}]
    return resource


def record(resource, status="active"):
    return {**member_record(patient_facts(resource, SETTINGS)), "status": status}


def group(*records_by_id, master=None, **extra):
    return {"members": dict(records_by_id), "master": master, "request": None, **extra}


def as_group(doc: dict, collection: str = "nik_index") -> Group:
    """The stored form of a group (what these tests build and change) as the rules take it."""
    return Group.from_doc(f"{collection}/token", doc)


# --- facts --------------------------------------------------------------------------------
def test_facts_keep_no_raw_nik_phone_or_address():
    facts = patient_facts(patient("a", phone="+62 812-3456-7890", address="Jl. Merdeka No. 5"), SETTINGS)
    flat = repr(member_record(facts))
    assert NIK_MAN not in flat and "812" not in flat and "merdeka" not in flat.lower()
    assert facts.kind == "nik" and facts.nik_issues == () and facts.score == 6.0


def test_invalid_nik_is_no_nik_with_reason():
    facts = patient_facts(patient("a", nik="3201011505"), SETTINGS)
    assert facts.kind == "none" and facts.nik_token is None
    assert facts.nik_issues == ("invalid-nik:wrong-length",)


def test_noisy_nik_gives_same_token():
    a = patient_facts(patient("a", nik="NIK: 3201.0115.0590.0001"), SETTINGS)
    b = patient_facts(patient("b"), SETTINGS)
    assert a.nik_token == b.nik_token


def test_baby_named_on_mothers_nik_is_a_newborn_of_that_group():
    facts = patient_facts(patient("b", name="By. Ny. Siti Aminah", birth="2024-02-01", gender="male",
                                  nik=NIK_MOTHER), SETTINGS)
    assert facts.kind == "nik-ibu" and facts.is_baby


def test_phone_and_address_normalisation_corroborate():
    a = record(patient("a", phone="+62 812 3456 7890", address="Jl. Merdeka No. 5"))
    b = record(patient("b", phone="0812-3456-7890", address="jalan merdeka nomor 5"))
    assert set(a["corroborators"]) == set(b["corroborators"])


@pytest.mark.parametrize("incoming,stored,newer", [
    ("2", {"version": "1"}, True), ("1", {"version": "1"}, False), ("1", {"version": "3"}, False),
    ("10", {"version": "9"}, True), (None, {"version": "1"}, True), ("x", None, True),
])
def test_version_order_is_numeric(incoming, stored, newer):
    assert is_newer(incoming, None, stored) is newer


def test_opaque_versions_fall_back_to_last_updated():
    stored = {"version": "MTY4", "last_updated": "2024-01-02T00:00:00+00:00"}
    assert not is_newer("MTY3", "2024-01-01T00:00:00Z", stored)
    assert is_newer("MTY5", "2024-01-03T00:00:00Z", stored)
    assert not is_newer("MTY4", "2024-01-02T00:00:00Z", stored)


# --- NIK pair rules -----------------------------------------------------------------------
def test_same_person_with_name_noise_merges_with_evidence_and_no_values():
    decision = compare_nik_pair(record(patient("a", name="Tn. MUHAMMAD Budi Santoso")),
                                record(patient("b", name="Moh. Budi Santoso")), SETTINGS)
    assert decision.outcome == MERGE and decision.reason == "nik-match"
    assert decision.evidence["fields"]["birth_date"] == "agree"
    assert "1990" not in repr(decision.evidence) and "santoso" not in repr(decision.evidence).lower()


def test_mistyped_nik_collision_with_different_name_is_nik_conflict():
    decision = compare_nik_pair(record(patient("a")), record(patient("b", name="Agus Wijaya")), SETTINGS)
    assert (decision.outcome, decision.reason) == (REVIEW, "nik-conflict")


def test_in_between_name_is_name_mismatch():
    decision = compare_nik_pair(record(patient("a", name="Budi Santoso")), record(patient("b", name="Budi")),
                                RULES_ONLY)
    assert (decision.outcome, decision.reason) == (REVIEW, "name-mismatch")


def test_birthdate_contradicting_the_nik_on_one_side():
    decision = compare_nik_pair(record(patient("a")), record(patient("b", birth="1991-07-02")), SETTINGS)
    assert (decision.outcome, decision.reason) == (REVIEW, "nik-birthdate-mismatch")


def test_both_inconsistent_but_different_birthdates_is_birthdate_conflict():
    decision = compare_nik_pair(record(patient("a", birth="1990-05-16")),
                                record(patient("b", birth="1990-05-17")), RULES_ONLY)
    assert (decision.outcome, decision.reason) == (REVIEW, "birthdate-conflict")


def test_gender_conflict():
    # Both contradict the NIK's sex the same way, so only the gender differs between them.
    a = record(patient("a", gender="male", nik=NIK_WOMAN))
    b = record(patient("b", gender="other", nik=NIK_WOMAN))
    b["gender"] = "female"
    b["derived"] = []  # the record's own gender, not the one its NIK fills in for "other"
    b["nik_issues"] = a["nik_issues"]
    decision = compare_nik_pair(a, b, RULES_ONLY)
    assert (decision.outcome, decision.reason) == (REVIEW, "gender-conflict")


def test_missing_birthdate_and_gender_still_merge_on_nik_and_name():
    decision = compare_nik_pair(record(patient("a")), record(patient("b", birth=None, gender=None)), SETTINGS)
    assert decision.outcome == MERGE
    assert decision.evidence["fields"]["birth_date"] == "missing"


def test_baby_on_mothers_nik_never_merges_into_mother():
    mother = record(patient("m", name="Siti Aminah", birth="1988-03-01", gender="female", nik=NIK_MOTHER))
    baby = record(patient("b", name="By. Ny. Siti Aminah", birth="2024-02-01", gender="female", nik=None,
                          nik_ibu=NIK_MOTHER))
    for confirmed in (False, True):
        decision = compare_nik_pair(baby, mother, SETTINGS, confirmed=confirmed)
        assert (decision.outcome, decision.reason) == (NO_MATCH, "baby-vs-adult")


def test_twins_never_merge_even_when_confirmed():
    one = record(patient("t1", name="Bayi Ny. Siti Aminah", birth="2024-02-01", gender="male", nik=None,
                         nik_ibu=NIK_MOTHER, multiple=1))
    two = record(patient("t2", name="Bayi Ny. Siti Aminah", birth="2024-02-01", gender="male", nik=None,
                         nik_ibu=NIK_MOTHER, multiple=2))
    assert compare_nik_pair(one, two, SETTINGS, confirmed=True).reason == "twins"
    assert compare_demographic_pair(one, two, SETTINGS, confirmed=True).outcome == NO_MATCH


def test_same_baby_twice_goes_to_review_never_auto_merge():
    one = record(patient("b1", name="By. Ny. Siti Aminah", birth="2024-02-01", gender="male", nik=None,
                         nik_ibu=NIK_MOTHER))
    two = record(patient("b2", name="Bayi Ny. Siti Aminah", birth="2024-02-01", gender="male", nik=None,
                         nik_ibu=NIK_MOTHER))
    decision = compare_nik_pair(one, two, SETTINGS)
    assert (decision.outcome, decision.reason) == (REVIEW, "possible-baby-duplicate")
    assert compare_nik_pair(one, two, SETTINGS, confirmed=True).outcome == MERGE


def test_rejected_pair_is_never_proposed_and_confirmed_overrides_name():
    a, b = record(patient("a")), record(patient("b", name="Agus Wijaya"))
    assert compare_nik_pair(a, b, SETTINGS, rejected=True).outcome == NO_MATCH
    assert compare_nik_pair(a, b, SETTINGS, confirmed=True).outcome == MERGE


# --- demographic pair rules ---------------------------------------------------------------
def test_demographic_needs_high_name_score_and_corroboration():
    a = record(patient("a", nik=None, phone="081234567890"))
    b = record(patient("b", nik=None, phone="+62 812 3456 7890"))
    assert compare_demographic_pair(a, b, SETTINGS).reason == "model-match"
    c = record(patient("c", nik=None))
    # Name, birth date and sex agree but nothing else links them (a namesake is as likely): review.
    assert compare_demographic_pair(a, c, SETTINGS).reason == "model-review"


def test_demographic_auto_merge_can_be_switched_off():
    a = record(patient("a", nik=None, phone="081234567890"))
    b = record(patient("b", nik=None, phone="081234567890"))
    off = Settings(demographic_auto_merge_enabled=False)
    assert compare_demographic_pair(a, b, off).reason == "model-review"


def test_demographic_never_merges_two_different_niks():
    a = record(patient("a", phone="081234567890"))
    b = record(patient("b", nik="3201011505900099", phone="081234567890"))
    # Nothing but the NIK differs: a person decides (``two_niks``), no rule merges.
    assert (compare_demographic_pair(a, b, SETTINGS).outcome, compare_demographic_pair(a, b, SETTINGS).reason) == (
        REVIEW, "two-niks-review")
    c = record(patient("c", name="Budi Santosa", nik="3201011505900099", phone="081234567890"))
    assert compare_demographic_pair(a, c, SETTINGS).reason == "different-nik"


def test_niks_one_serial_digit_apart_go_to_review_never_merge():
    # Consistent NIKs one digit apart in the serial: a typo, or twins / namesakes with consecutive serials.
    a = record(patient("a", phone="081234567890"))
    b = record(patient("b", nik="3201011505900009"))
    decision = compare_demographic_pair(a, b, SETTINGS)
    assert (decision.outcome, decision.reason) == (REVIEW, "nik-one-digit-review")


def test_a_one_digit_typo_in_the_nik_date_part_merges_when_it_shows():
    # b's NIK says the 16th (one digit off) while both records say the 15th: b's NIK is the typo.
    a = record(patient("a"))
    b = record(patient("b", nik="3201011605900001"))
    assert b["nik_issues"] == ["nik-birthdate-mismatch"]
    decision = compare_demographic_pair(a, b, SETTINGS)
    assert (decision.outcome, decision.reason) == (MERGE, "nik-one-digit-match")
    assert decision.evidence["model"]["comparisons"]["nik"]["level"] == "one-digit"


def test_adult_twins_never_merge_at_any_age():
    a = record(patient("a", nik=None, phone="081234567890", multiple=1))
    b = record(patient("b", nik=None, phone="081234567890", multiple=2))
    assert compare_demographic_pair(a, b, SETTINGS).reason == "twins"
    assert compare_nik_pair(record(patient("c", multiple=1)), record(patient("d", multiple=2)), SETTINGS).reason \
        == "twins"


def test_the_model_merges_what_the_rules_left_to_review_under_one_nik():
    # Same NIK, one name holding every word of the other ("Budi Santoso" / "Budi Santoso Hartono Wijaya"):
    # the rules hesitate, the model merges, and the decision records the weights per comparison and the model version.
    a, b = record(patient("a")), record(patient("b", name="Budi Santoso Hartono Wijaya"))
    assert compare_nik_pair(a, b, RULES_ONLY).reason == "name-mismatch"
    decision = compare_nik_pair(a, b, SETTINGS)
    assert (decision.outcome, decision.reason) == (MERGE, "model-match")
    model = decision.evidence["model"]
    assert model["comparisons"]["name"]["level"] == "subset-or-swap" and model["model_version"]
    assert model["identity_weight"] >= SETTINGS.model_merge_weight


def test_a_single_given_name_under_one_nik_needs_a_shared_phone_or_address():
    # "Budi" / "Budi Santoso" under one NIK: a serial typo of a namesake born the same day in the same
    # district (whose NIK shares the first 12 digits) looks exactly like this. Only household evidence
    # (the NIK owner's phone) lets the model merge it.
    a, b = record(patient("a")), record(patient("b", name="Budi"))
    assert compare_nik_pair(a, b, SETTINGS).outcome == REVIEW
    a, b = record(patient("a", phone="081234567890")), record(patient("b", name="Budi", phone="081234567890"))
    assert (compare_nik_pair(a, b, SETTINGS).outcome, compare_nik_pair(a, b, SETTINGS).reason) == (MERGE, "model-match")


def test_a_nik_of_a_placeholder_date_needs_a_shared_phone_or_address():
    nik = "3201014101900001"  # a woman "born" 1 January 1990
    a = record(patient("a", name="Sri Handayani", birth="1990-01-01", gender="female", nik=nik))
    b = record(patient("b", name="Sri Handayani", birth="1990-01-01", gender="female", nik=nik))
    assert (compare_nik_pair(a, b, SETTINGS).outcome, compare_nik_pair(a, b, SETTINGS).reason) == (
        REVIEW, "nik-placeholder-date")
    a = record(patient("a", name="Sri Handayani", birth="1990-01-01", gender="female", nik=nik, address="Jl. Mawar 3"))
    b = record(patient("b", name="Sri Handayani", birth="1990-01-01", gender="female", nik=nik, address="Jl. Mawar 3"))
    assert compare_nik_pair(a, b, SETTINGS).outcome == MERGE


def test_place_words_are_the_place_names_of_a_line_whatever_its_form():
    forms = ("Dsn. Tegalrejo RT 1/RW 10, Ds. Margoagung", "TEGALREJO 01/10 MARGOAGUNG",
             "Dusun Tegalrejo, Margoagung, Kec. Seyegan", "Dusun Tegalrejo RT 001 RW 010 Desa Margoagung")
    assert all(place_words(line) == ["tegalrejo", "margoagung"] for line in forms)
    assert place_words("Jl. Kaliurang No. 12, Kel. Sinduadi, Kab. Sleman") == ["kaliurang", "sinduadi"]


def test_one_nik_on_two_stated_homes_without_a_common_place_is_a_human_decision():
    # A NIK's first 12 digits are the kecamatan, birth date and sex: a serial typo lands on a person who
    # agrees on all three. With a common name agreeing too, two homes naming no common place are the only
    # sign of two people ("Paijo Hidayat" / "Paijo Hidajat" of two desa of one kecamatan).
    a = record(patient("a", name="Paijo Hidayat", address="Dusun Tegalrejo RT 006 RW 017 Desa Sumberarum"))
    b = record(patient("b", name="Paijo Hidajat", address="Dusun Jetis RT 009 RW 003 Desa Sumberrahayu"))
    decision = compare_nik_pair(a, b, SETTINGS)
    assert (decision.outcome, decision.reason) == (REVIEW, "nik-home-conflict")
    # One home in two forms, a desa written differently, no address on one side, a shared phone: merge.
    for address_b, phone in (("Dsn. Tegalrejo RT 6/RW 17, Ds. Sumberarum", None),
                             ("Dusun Tegalrejo RT 006 RW 017 Desa Sumberagung", None),
                             (None, None),
                             ("Dusun Jetis RT 009 RW 003 Desa Sumberrahayu", "081234567890")):
        a = record(patient("a", name="Paijo Hidayat", phone=phone,
                           address="Dusun Tegalrejo RT 006 RW 017 Desa Sumberarum"))
        b = record(patient("b", name="Paijo Hidajat", address=address_b, phone=phone))
        assert compare_nik_pair(a, b, SETTINGS).outcome == MERGE, address_b


def test_two_hamlets_of_one_village_are_two_homes():
    # "Zainab" of Dusun Nglempong and "Zainab" of Dusun Karanganyar, both of Desa Sumberharjo: the village
    # is shared by thousands, the hamlet is the home.
    a = record(patient("a", name="Zainab", gender="female", nik=NIK_WOMAN,
                       address="Dusun Nglempong RT 002 RW 018 Desa Sumberharjo"))
    b = record(patient("b", name="Zainab", gender="female", nik=NIK_WOMAN,
                       address="Dusun Karanganyar RT 006 RW 013 Desa Sumberharjo"))
    assert compare_nik_pair(a, b, SETTINGS).reason == "nik-home-conflict"
    c = record(patient("c", name="Zainab", gender="female", nik=NIK_WOMAN, address="NGLEMPONG 02/18 SUMBERHARJO"))
    assert compare_nik_pair(a, c, SETTINGS).outcome == MERGE


def test_a_relatives_nik_with_a_shared_family_name_is_never_merged_by_the_model():
    # "Yulnida Piliang", a woman, carries the NIK of "Bapak Piliang" (a man) of the same household: the NIK
    # disagrees with her record; a family name and a home in common are what relatives have.
    father = record(patient("f", name="Bapak Piliang", birth="1990-05-15", nik=NIK_MAN,
                            address="PUNDUNG 01/17 SUMBERADI"))
    daughter = record(patient("d", name="An. Yulnida Piliang", birth=None, gender="female", nik=NIK_MAN,
                              address="PUNDUNG 01/17 SUMBERADI"))
    decision = compare_nik_pair(father, daughter, SETTINGS)
    assert decision.outcome == REVIEW and decision.reason == "nik-birthdate-mismatch"


def test_a_namesake_one_nik_typo_away_living_with_one_record_makes_the_nik_a_human_decision():
    # "Ibu Patimah" carries the NIK of "Fatimah" (serial 0001), born the same day in the same kecamatan;
    # "Patimah" under serial 0002 lives where "Ibu Patimah" does: the record may be hers, mistyped.
    nik_neighbour = NIK_WOMAN[:-1] + "3"
    newcomer = record(patient("n", name="Ibu Patimah", gender=None, nik=NIK_WOMAN,
                              address="Dusun Tegalrejo, Margoagung, Kec. Seyegan"))
    owner = record(patient("o", name="Sdri. Fatimah", gender="female", nik=NIK_WOMAN))
    neighbour = record(patient("x", name="PATIMAH", gender="female", nik=nik_neighbour,
                               address="Dsn. Tegalrejo RT 1/RW 10, Ds. Margoagung"))
    assert nik_neighbours({"x": neighbour, "o": owner, "n": newcomer}, owner["nik_token"]) == (neighbour,)
    assert compare_nik_pair(newcomer, owner, SETTINGS).outcome == MERGE
    for a, b in ((newcomer, owner), (owner, newcomer)):        # whichever record lives with the namesake
        decision = compare_nik_pair(a, b, SETTINGS, neighbours=(neighbour,))
        assert (decision.outcome, decision.reason) == (REVIEW, "nik-namesake-nearby")
    elsewhere = record(patient("x", name="PATIMAH", gender="female", nik=nik_neighbour,
                               address="Dusun Jetis, Sumberrahayu"))
    other_name = record(patient("x", name="Sri Wahyuni", gender="female", nik=nik_neighbour,
                                address="Dsn. Tegalrejo RT 1/RW 10, Ds. Margoagung"))
    for unrelated in (elsewhere, other_name):
        assert compare_nik_pair(newcomer, owner, SETTINGS, neighbours=(unrelated,)).outcome == MERGE
    # A home the pair shares (the owner's record names the same dusun) settles it.
    at_home = record(patient("o", name="Sdri. Fatimah", gender="female", nik=NIK_WOMAN,
                             address="TEGALREJO 01/10 MARGOAGUNG"))
    assert compare_nik_pair(newcomer, at_home, SETTINGS, neighbours=(neighbour,)).outcome == MERGE


def test_a_record_whose_home_conflicts_with_the_master_joins_only_through_a_record_it_lives_with():
    # "Soemarni Sari" carries the NIK of "Suparmi Sari" (another desa) and nearly matches "Sari Suparmi",
    # a record of the owner without an address: that record cannot vouch for her.
    master = record(patient("m", name="Suparmi Sari", birth="1990-05-15", gender="female", nik=NIK_WOMAN,
                            phone="082267689391", address="NGABEAN 07/20 MAGUWOHARJO"), status="master")
    merged = record(patient("d", name="Sari Suparmi", gender="female", nik=NIK_WOMAN, phone="082267689391"),
                    status="duplicate")
    newcomer = record(patient("n", name="Soemarni Sari", gender="female", nik=NIK_WOMAN,
                              address="Dusun Banjarharjo, Caturtunggal, Kec. Depok"))
    doc = group(("m", master), ("d", merged), ("n", newcomer), master="m")
    grp = as_group(doc)
    grp.open_request(RequestPlan("m", ("d",), "nik-match", "matching", {}))
    plan = plan_nik_group(grp, "n", SETTINGS)
    assert plan.master is None and [r.reason for r in plan.reviews] == ["nik-home-conflict"]


def test_near_names_on_one_birth_date_in_one_household_are_never_merged_without_a_nik():
    # Twins: "Nurmaida" / "Nurmaide", one birth date, one phone, one of them without a NIK.
    a = record(patient("a", name="Nurmaida Sihombing", birth="2018-02-27", gender="female", nik=None,
                       phone="081234567890"))
    b = record(patient("b", name="Nurmaide Sihombing", birth="2018-02-27", gender="female", nik=None,
                       phone="081234567890"))
    assert compare_demographic_pair(a, b, SETTINGS).outcome == REVIEW


def test_a_nik_shared_by_clearly_different_names_is_never_merged_by_the_model():
    a, b = record(patient("a")), record(patient("b", name="Sri Wahyuni"))
    decision = compare_nik_pair(a, b, SETTINGS)
    assert (decision.outcome, decision.reason) == (REVIEW, "nik-conflict")


def test_demographic_different_names_no_match():
    a = record(patient("a", nik=None, phone="081234567890"))
    b = record(patient("b", name="Agus Wijaya", nik=None, phone="081234567890"))
    assert compare_demographic_pair(a, b, SETTINGS).outcome == NO_MATCH


# --- master selection ---------------------------------------------------------------------
def test_master_golden_wins_then_completeness_source_recency_id():
    members = {
        "a": record(patient("a", phone="0812345678", address="Jl. Merdeka 5")),
        "b": record(patient("b", golden=True)),
        "c": record(patient("c", phone="0812345678", address="Jl. Merdeka 5", source="simrs")),
        "d": record(patient("d", phone="0812345678", address="Jl. Merdeka 5", source="lab",
                            updated="2025-01-01T00:00:00Z")),
    }
    assert select_master(members, ["a", "b", "c", "d"], SETTINGS.source_priority) == "b"
    assert select_master(members, ["a", "c", "d"], SETTINGS.source_priority) == "c"
    assert select_master(members, ["a", "d"], SETTINGS.source_priority) == "d"
    members["e"] = dict(members["a"])
    assert select_master(members, ["e", "a"], SETTINGS.source_priority) == "a"
    assert select_master(members, ["a", "e"], SETTINGS.source_priority) == "a"


def test_inactive_golden_does_not_win():
    members = {"a": record(patient("a")), "b": record(patient("b", golden=True, active=False))}
    members["a"]["score"] = 0.0
    assert select_master(members, ["b", "a"], SETTINGS.source_priority) == "a"


# --- group plans --------------------------------------------------------------------------
def test_nik_group_plan_is_independent_of_arrival_order():
    records = {pid: record(patient(pid, name=name, updated=f"2024-01-0{i + 1}T00:00:00Z"))
               for i, (pid, name) in enumerate([("p1", "Budi Santoso"), ("p2", "BUDI SANTOSO"),
                                                 ("p3", "Tn. Budi Santoso")])}
    masters = set()
    for incoming in records:
        doc = group(*records.items())
        plan = plan_nik_group(as_group(doc), incoming, SETTINGS)
        masters.add(plan.master)
    assert len(masters) == 1


def test_nik_group_joins_existing_master_and_reviews_collision():
    master = record(patient("m"), status="master")
    dup = record(patient("d", name="Budi Santoso, S.Kom"))
    plan = plan_nik_group(as_group(group(("m", master), ("d", dup), master="m")), "d", SETTINGS)
    assert (plan.master, plan.duplicates, plan.reason) == ("m", ["d"], "nik-match")
    other = record(patient("x", name="Agus Wijaya"))
    plan = plan_nik_group(as_group(group(("m", master), ("x", other), master="m")), "x", SETTINGS)
    assert plan.master is None and plan.reviews[0].reason == "nik-conflict"
    assert plan.statuses["x"][0] == "review"


def test_mistyped_record_arriving_first_does_not_block_the_real_pair():
    # x carries this NIK by mistake: its birth date contradicts it, so the real owner is preferred
    # as reference and the owner's duplicate still merges.
    x = record(patient("x", name="Agus Wijaya", birth="1975-01-02"))
    owner = record(patient("o"))
    owner2 = record(patient("o2", name="BUDI SANTOSO"))
    plan = plan_nik_group(as_group(group(("x", x), ("o", owner), ("o2", owner2))), "o2", SETTINGS)
    assert plan.master in ("o", "o2") and set(plan.duplicates) == {"o", "o2"} - {plan.master}
    assert "x" not in plan.duplicates
    # and when x itself is (re)evaluated, it goes to review against the owner
    plan = plan_nik_group(as_group(group(("x", x), ("o", owner))), "x", SETTINGS)
    assert plan.master is None and [r.reason for r in plan.reviews] == ["nik-conflict"]


def test_baby_in_group_with_mother_only_reviews_other_babies():
    mother = record(patient("m", name="Siti Aminah", birth="1988-03-01", gender="female", nik=NIK_MOTHER))
    baby1 = record(patient("b1", name="By. Ny. Siti Aminah", birth="2024-02-01", gender="male", nik=NIK_MOTHER))
    baby2 = record(patient("b2", name="Bayi Ny. Siti Aminah", birth="2024-02-01", gender="male", nik=None,
                           nik_ibu=NIK_MOTHER))
    plan = plan_nik_group(as_group(group(("m", mother), ("b1", baby1), ("b2", baby2))), "b2", SETTINGS)
    assert plan.master is None
    assert [(r.patient_ids, r.reason) for r in plan.reviews] == [(("b1", "b2"), "possible-baby-duplicate")]
    assert plan.decisions["m"].reason == "baby-vs-adult"
    plan = plan_nik_group(as_group(group(("m", mother), ("b1", baby1))), "m", SETTINGS)
    assert plan.master is None and not plan.reviews


def test_demographic_plan_single_strong_candidate_merges_several_go_to_review():
    a = record(patient("a", nik=None, phone="081234567890"))
    b = record(patient("b", phone="081234567890"))
    plan = plan_demographic_group(as_group(group(("a", a), ("b", b)), "demographic_index"), "a", SETTINGS)
    assert (plan.master, plan.duplicates, plan.reason) == ("b", ["a"], "demographic-match")
    c = record(patient("c", nik="3201011505900009", phone="081234567890"))
    plan = plan_demographic_group(as_group(group(("a", a), ("b", b), ("c", c)), "demographic_index"), "a", SETTINGS)
    assert plan.master is None and plan.reviews[-1].reason == "ambiguous-match"


def test_demographic_plan_nik_bearing_newcomer_finds_nikless_twin():
    a = record(patient("a", nik=None, phone="081234567890"))
    b = record(patient("b", phone="081234567890"))
    plan = plan_demographic_group(as_group(group(("a", a), ("b", b)), "demographic_index"), "b", SETTINGS)
    assert (plan.master, plan.duplicates) == ("a", ["b"])  # the service redirects to b's NIK group


def test_nik_name_threshold_is_lower_only_when_birthdate_and_nik_agree():
    typo_a, typo_b = patient("a", name="Nabila Oktaviani", gender="female", nik=NIK_WOMAN), \
        patient("b", name="Nbaila Oktaviani", gender="female", nik=NIK_WOMAN)
    decision = compare_nik_pair(record(typo_a), record(typo_b), SETTINGS)
    assert SETTINGS.nik_name_match_threshold <= decision.evidence["name_score"] < SETTINGS.name_match_threshold
    assert decision.outcome == MERGE
    typo_b["birthDate"] = None
    assert compare_nik_pair(record(typo_a), record(typo_b), SETTINGS).reason == "name-mismatch"


# --- a near miss of the master that matches one of its duplicates (synthetic names) -----------------
def _master_with_typo_and_duplicate(**newcomer):
    master = record(patient("m", name="Widodo Nagraha", phone="081234567890"), status="master")
    dup = record(patient("d", name="Widodo Nugraha"), status="duplicate")
    new = record(patient("n", name="WIDODO NUGRAHA", birth=None, **newcomer))
    request = {"id": "mr-1", "status": "open", "master": "m", "duplicates": ["d"], "evidence": {}}
    return group(("m", master), ("d", dup), ("n", new), master="m", request=request)


def test_near_miss_of_master_merges_through_a_duplicate_it_fully_matches():
    doc = _master_with_typo_and_duplicate()
    plan = plan_nik_group(as_group(doc), "n", RULES_ONLY)
    assert (plan.master, plan.duplicates, plan.reason) == ("m", ["n"], "nik-match")
    pair = plan.evidence["pairs"][0]
    assert pair["rule"] == "nik-match-via-duplicate" and pair["via"]["patients"] == ["d", "n"]
    assert pair["via"]["rule"] == "nik-match" and "nugraha" not in repr(pair).lower()
    # without the duplicate the same newcomer is a near miss for a human
    del doc["members"]["d"]
    doc["request"] = None
    plan = plan_nik_group(as_group(doc), "n", RULES_ONLY)
    assert plan.master is None and [r.reason for r in plan.reviews] == ["name-mismatch"]


def test_bridge_never_overrides_a_conflict_or_a_human_rejection():
    doc = _master_with_typo_and_duplicate()
    doc["members"]["n"]["gender"] = "female"  # contradicts the NIK: not a near miss, a conflict
    doc["members"]["n"]["nik_issues"] = ["nik-gender-mismatch"]
    plan = plan_nik_group(as_group(doc), "n", RULES_ONLY)
    assert plan.master is None and plan.reviews[0].reason == "nik-birthdate-mismatch"
    doc = _master_with_typo_and_duplicate()
    doc["do_not_match"] = ["m|n"]
    plan = plan_nik_group(as_group(doc), "n", RULES_ONLY)
    assert plan.master is None and plan.decisions["m"].reason == "do-not-match"
    doc = _master_with_typo_and_duplicate()
    doc["do_not_match"] = ["d|n"]
    plan = plan_nik_group(as_group(doc), "n", RULES_ONLY)
    assert plan.master is None and plan.reviews[0].reason == "name-mismatch"


def test_collision_record_is_never_bridged_by_an_owner_duplicate():
    doc = _master_with_typo_and_duplicate()
    doc["members"]["n"] = record(patient("n", name="Agus Wijaya", birth=None))
    plan = plan_nik_group(as_group(doc), "n", SETTINGS)
    assert plan.master is None and plan.reviews[0].reason == "nik-conflict"


def test_new_duplicate_bridges_a_member_waiting_in_review():
    master = record(patient("m", name="Widodo Nagraha", phone="081234567890"), status="master")
    waiting = record(patient("w", name="WIDODO NUGRAHA", birth=None), status="review")
    waiting["reason"] = "name-mismatch"
    dup = record(patient("d", name="Widodo Nugraha"))  # 92.9 against the master, birth date agrees
    doc = group(("m", master), ("w", waiting), ("d", dup), master="m")
    plan = plan_nik_group(as_group(doc), "d", RULES_ONLY)
    assert (plan.master, plan.duplicates) == ("m", ["d", "w"])
    assert [p["rule"] for p in plan.evidence["pairs"]] == ["nik-match", "nik-match-via-duplicate"]
    # a human who rejected the waiting pair keeps it apart
    doc["do_not_match"] = ["m|w"]
    assert plan_nik_group(as_group(doc), "d", RULES_ONLY).duplicates == ["d"]


def test_evaluation_counts_review_only_through_items_a_reviewer_would_approve():
    from tools.calibration.evaluate_matching import MERGED, MISSED, REVIEW, classify_pairs

    person = {"a": 1, "b": 1, "c": 1, "e": 1, "f": 1, "x": 2}.get
    pairs = [("a", "b"), ("a", "c"), ("e", "f")]
    outcome = classify_pairs(pairs, {("a", "b")}, [["a", "b"]], [["b", "c"], ["e", "x"], ["f", "x"]],
                             lambda p, q: person(p) == person(q))
    # a-c: approving b|c unites them; e-f: only through x, another person a reviewer rejects
    assert outcome == {("a", "b"): MERGED, ("a", "c"): REVIEW, ("e", "f"): MISSED}


def test_demographic_block_never_puts_two_people_in_one_request():
    # Two people with one name and birth date, no NIK, each with a corroborated pair of records.
    first = [record(patient(pid, nik=None, address="Dusun Kledokan RT 2")) for pid in ("a1", "a2")]
    second = [record(patient(pid, nik=None, phone="081234567890")) for pid in ("b1", "b2")]
    request = {"id": "mr-1", "status": "open", "master": "a1", "duplicates": ["a2"], "evidence": {}}
    doc = group(("a1", first[0]), ("a2", first[1]), ("b1", second[0]), ("b2", second[1]),
                master="a1", request=request)
    plan = plan_demographic_group(as_group(doc, "demographic_index"), "b2", SETTINGS)
    assert plan.master is None
    assert [(r.patient_ids, r.reason) for r in plan.reviews][-1] == (("b1", "b2"), "block-request-busy")
    # the same pair merges once the block has no other request
    doc["request"] = None
    plan = plan_demographic_group(as_group(doc, "demographic_index"), "b2", SETTINGS)
    assert (plan.master, plan.duplicates) == ("b1", ["b2"])


def test_owner_records_still_merge_when_the_best_record_carries_the_nik_by_mistake():
    # x: another person's record with this NIK mistyped, the most complete one, so the reference.
    x = record(patient("x", name="Agus Wijaya", phone="081234567890", address="Jl. Merdeka No. 5"))
    owner = record(patient("o"), status="review")
    owner["reason"] = "nik-conflict"
    owner2 = record(patient("o2", name="BUDI SANTOSO"))
    plan = plan_nik_group(as_group(group(("x", x), ("o", owner), ("o2", owner2))), "o2", SETTINGS)
    assert {plan.master, *plan.duplicates} == {"o", "o2"} and "x" not in plan.duplicates
    assert [(r.patient_ids, r.reason) for r in plan.reviews] == [(("o2", "x"), "nik-conflict")]
    # a near name is not enough beside a stranger: only a full nik-match merges
    owner2 = record(patient("o2", name="Budi Santosa", birth=None))
    plan = plan_nik_group(as_group(group(("x", x), ("o", owner), ("o2", owner2))), "o2", SETTINGS)
    assert plan.master is None


def test_one_digit_apart_niks_merge_as_a_serial_typo_only_with_the_same_name_and_household():
    # The same person, a serial typo in the serial's first three digits, the same name, real birth date
    # and sex: merged, household or not (namesakes of one birth date hold serials 0001/0002, not
    # 0001/0701). The last digit is how consecutive serials differ: twins registered together at home,
    # namesakes apart: a human decides. Near names (twins) go to review too.
    one = "3201011505900001"
    typo = "3201011505900701"
    next_serial = "3201011505900002"
    a = record(patient("a", nik=one, phone="081234567890"))
    assert compare_demographic_pair(a, record(patient("b", nik=typo, phone="081234567890")), SETTINGS).outcome == MERGE
    assert compare_demographic_pair(record(patient("a", nik=one)), record(patient("b", nik=typo)),
                                    SETTINGS).outcome == MERGE
    assert compare_demographic_pair(a, record(patient("b", nik=next_serial, phone="081234567890")),
                                    SETTINGS).outcome == REVIEW
    assert compare_demographic_pair(record(patient("a", nik=one)), record(patient("b", nik=next_serial)),
                                    SETTINGS).outcome == REVIEW
    twin = record(patient("b", name="Budi Santosa", nik=typo, phone="081234567890"))
    assert compare_demographic_pair(a, twin, SETTINGS).outcome == REVIEW


def test_records_waiting_in_review_for_one_master_are_named_in_one_item():
    # "Wulan" and "Ibu Wulan" under the NIK of "Wulan Sari": each waits for a human against the master;
    # the second one's item names the first too (they are one person: a reviewer decides them together).
    master = record(patient("m", name="Wulan Sari", birth="1997-07-25", gender="female", nik=NIK_WOMAN.replace(
        "550590", "650797")), status="master")
    first = record(patient("a", name="Wulan", birth="1997-07-25", gender="female",
                           nik=NIK_WOMAN.replace("550590", "650797")), status="review")
    first["reason"] = "name-mismatch"
    second = record(patient("b", name="Ibu Wulan", birth="1997-07-25", gender="female",
                            nik=NIK_WOMAN.replace("550590", "650797")))
    plan = plan_nik_group(as_group(group(("m", master), ("a", first), ("b", second), master="m")), "b", SETTINGS)
    assert plan.master is None
    assert [set(r.patient_ids) for r in plan.reviews] == [{"a", "b", "m"}]


def test_niks_one_transposition_apart_go_to_review_like_a_one_digit_typo():
    # "...0012" typed "...0021": the two common keyboard errors are one typo apart alike; a serial typo
    # (or consecutive serials of twins / namesakes) goes to a human.
    a = record(patient("a", nik="3201011505900012", phone="081234567890"))
    b = record(patient("b", nik="3201011505900021"))
    decision = compare_demographic_pair(a, b, SETTINGS)
    assert (decision.outcome, decision.reason) == (REVIEW, "nik-one-digit-review")
    assert decision.evidence["model"]["comparisons"]["nik"]["level"] == "one-digit"
