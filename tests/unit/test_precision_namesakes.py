"""Namesakes the NIK rules merged (docs/matching.md, "Precision round 2"): two NIKs one region digit apart
at one address, on a KTP placeholder date; and a serial typo landing on a namesake who shares only a
hamlet's name, whose own record comes later in the batch."""

from __future__ import annotations

from shared.domain.pair_rules import MERGE, REVIEW, compare_demographic_pair, compare_nik_pair
from shared.domain.patient import patient_facts
from shared.messages import PatientChange
from tests.fakes import FakeServices, InMemoryFhir
from tests.unit.test_matching import NIK_WOMAN, SETTINGS, patient, record

# NIK_WOMAN = 3201015505900002: a woman born 1990-05-15 in kecamatan 320101, serial 0002.
NEXT_SERIAL = NIK_WOMAN[:-1] + "3"
OWNER_HOME = "Dsn. Sorogenen RT 7/RW 7, Ds. Sumberrahayu"
NAMESAKE_HOME = "SOROGENEN 03/11 SUMBERAGUNG"          # a hamlet of the same name, in another village


def _lestari_resource(pid: str, name: str, address: str, nik: str = NIK_WOMAN) -> dict:
    return patient(pid, name=name, gender="female", nik=nik, address=address)


def _lestari(pid: str, name: str, address: str, nik: str = NIK_WOMAN):
    return record(_lestari_resource(pid, name, address, nik))


def test_a_serial_typo_landing_on_a_namesake_who_shares_only_a_hamlet_name_goes_to_review():
    # Legacy seed 42: a second "HJ. LESTARI" typed her neighbour's serial (0002 for her 0003); her own record
    # under 0003 lives where she does. The NIK's owner lives in a hamlet of the same name in another village.
    owner = _lestari("o", "Hj. Lestari", OWNER_HOME)
    typo = _lestari("t", "HJ. LESTARI", NAMESAKE_HOME)
    her_own = _lestari("x", "Lestari", NAMESAKE_HOME, nik=NEXT_SERIAL)
    assert compare_nik_pair(owner, typo, SETTINGS).outcome == MERGE      # the pair alone shows nothing
    for a, b in ((owner, typo), (typo, owner)):
        decision = compare_nik_pair(a, b, SETTINGS, neighbours=(her_own,))
        assert (decision.outcome, decision.reason) == (REVIEW, "nik-namesake-nearby")


def test_one_address_in_two_forms_still_merges_beside_a_namesake():
    # Hamlet and village both named by the other's line: one home, the NIK's owner's (``one_address``).
    owner = _lestari("o", "Hj. Lestari", OWNER_HOME)
    copy = _lestari("t", "HJ. LESTARI", "SOROGENEN 07/07 SUMBERRAHAYU")
    elsewhere = _lestari("x", "Lestari", NAMESAKE_HOME, nik=NEXT_SERIAL)
    assert compare_nik_pair(owner, copy, SETTINGS, neighbours=(elsewhere,)).outcome == MERGE


def test_a_batch_meets_the_namesakes_own_record_even_when_it_comes_later():
    # The batch knows its NIK holders before it decides (``MatchingService.expect``): the typo's group
    # decides with the namesake's own record as a neighbour whatever the order.
    patients = [_lestari_resource("o", "Hj. Lestari", OWNER_HOME), _lestari_resource("t", "HJ. LESTARI", NAMESAKE_HOME),
                _lestari_resource("x", "Lestari", NAMESAKE_HOME, nik=NEXT_SERIAL)]
    for knows in (False, True):
        fhir = InMemoryFhir()
        for resource in patients:
            fhir.update(resource)
        world = FakeServices(SETTINGS, fhir)
        if knows:
            world.matching.expect(patient_facts(p, SETTINGS) for p in patients)
        for resource in patients:
            world.matching.handle_change(PatientChange(resource["id"], "upsert"))
        merged = {frozenset((m["master"], d)) for m in world.merge_requests_published() for d in m["duplicates"]}
        assert (frozenset(("o", "t")) in merged) is not knows   # without knowing, the later record comes too late

MONONYM_HOME = "Dk. Tegalsari Rt 2 Rw 3, Ds. Nanggulan"


def _wagiman(pid: str, nik: str):
    return record(patient(pid, name="Wagiman", birth="1961-07-01", gender="male", nik=nik, address=MONONYM_HOME))


def test_niks_one_region_digit_apart_at_one_address_go_to_review():
    # Red-team seed 22: two elderly "Wagiman" of one address, both the first man registered on 1 July 1961
    # (serial 0001) in two neighbouring kecamatans: 3310060107610001 / 3310030107610001.
    first, second = _wagiman("a", "3310060107610001"), _wagiman("b", "3310030107610001")
    decision = compare_demographic_pair(first, second, SETTINGS)
    assert (decision.outcome, decision.reason) == (REVIEW, "nik-one-digit-review")


def test_a_serial_typo_at_one_address_still_merges():
    # The same two records with the NIKs one digit apart within the serial (0001 / 0071): one man's typo.
    first, second = _wagiman("a", "3310060107610001"), _wagiman("b", "3310060107610071")
    assert compare_demographic_pair(first, second, SETTINGS).outcome == MERGE


def test_one_person_re_registered_in_the_next_kecamatan_at_one_home_still_merges():
    # Two NIKs one region digit apart at one household with a real birth date: one person with two NIKs.
    first = record(patient("a", name="Wagiman", birth="1961-07-09", nik="3310060907610001", address=MONONYM_HOME))
    second = record(patient("b", name="Wagiman", birth="1961-07-09", nik="3310030907610001", address=MONONYM_HOME))
    assert compare_demographic_pair(first, second, SETTINGS).outcome == MERGE
