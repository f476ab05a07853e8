"""Namesakes the one-digit NIK rule merged (docs/matching.md, "Precision round 2"): two NIKs one region
digit apart at one address, on a KTP placeholder date."""

from __future__ import annotations

from shared.domain.pair_rules import MERGE, REVIEW, compare_demographic_pair
from tests.unit.test_matching import SETTINGS, patient, record

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
