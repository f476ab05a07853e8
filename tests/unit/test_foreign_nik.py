"""The guard on merging two records of one NIK that is neither's own (``shared.domain.foreign_nik``)."""

from __future__ import annotations

from shared.config import Settings
from shared.domain.foreign_nik import nik_of_neither
from shared.domain.pair_rules import MERGE, REVIEW, compare_nik_pair
from shared.domain.patient import member_record, patient_facts

SETTINGS = Settings()


def test_one_kk_number_on_two_siblings_without_birth_dates_goes_to_review():
    # A household's KK number (its date: the card's issue date, a "male" day) typed in the NIK field of two
    # sisters' records that state no birth date: near names, one address, the NIK agreeing with neither
    # record's sex. Without the guard the model merged them on the NIK and the birth date derived from it.
    kk = "3310021506150003"
    sister = {"resourceType": "Patient", "id": "a", "name": [{"text": "Dewi Lestari"}], "gender": "female",
              "identifier": [{"system": SETTINGS.nik_system, "value": kk}],
              "address": [{"line": ["Dk. Krajan RT 003 RW 005"]}]}
    other = {**sister, "id": "b", "name": [{"text": "Dewi Listari"}]}
    a, b = (member_record(patient_facts(r, SETTINGS)) for r in (sister, other))
    assert nik_of_neither(a, b)
    assert compare_nik_pair(a, b, SETTINGS).outcome == REVIEW


def test_a_nik_agreeing_with_one_record_is_not_of_neither():
    own = {"resourceType": "Patient", "id": "a", "name": [{"text": "Nur Aini"}], "gender": "female",
           "birthDate": "2015-06-15", "identifier": [{"system": SETTINGS.nik_system, "value": "3310025506150003"}]}
    missing_sex = {**own, "id": "b"}
    del missing_sex["gender"]
    a, b = (member_record(patient_facts(r, SETTINGS)) for r in (own, missing_sex))
    assert not nik_of_neither(a, b)
    assert compare_nik_pair(a, b, SETTINGS).outcome == MERGE
