"""NIKs one typo apart in the serial's first three digits (``shared.domain.serial_typo``)."""

from __future__ import annotations

from shared.domain.pair_rules import MERGE, REVIEW, compare_demographic_pair
from tests.unit.test_matching import NIK_MAN, SETTINGS, patient, record

# NIK_MAN = 3201011505900001: a man born 1990-05-15, serial 0001.
TENS_TYPO = "3201011505900011"        # digit 14 typed wrong
HUNDREDS_TYPO = "3201011505900101"    # digit 13
NEXT_SERIAL = "3201011505900002"      # digit 15: a twin or namesake registered next


def _pair(other_nik: str, **fields):
    first = record(patient("a", name="Budi Santoso", nik=NIK_MAN))
    return first, record(patient("b", **({"name": "Budi Santoso", "nik": other_nik} | fields)))


def test_a_record_without_its_sex_merges_when_the_nik_differs_in_the_first_serial_digits():
    # Both NIKs share the date part, so they encode one sex; the record that states none takes it.
    for nik in (TENS_TYPO, HUNDREDS_TYPO):
        first, typo = _pair(nik, gender=None)
        decision = compare_demographic_pair(first, typo, SETTINGS)
        assert (decision.outcome, decision.reason) == (MERGE, "nik-one-digit-match"), nik


def test_a_near_name_merges_at_the_nik_name_threshold_in_the_first_serial_digits():
    first, typo = _pair(TENS_TYPO, name="Budi Santosa")
    assert compare_demographic_pair(first, typo, SETTINGS).outcome == MERGE
    # A name below the NIK's name threshold stays a human's question.
    first, other = _pair(TENS_TYPO, name="Bambang Santoso")
    assert compare_demographic_pair(first, other, SETTINGS).outcome != MERGE


def test_the_last_serial_digit_stays_in_review():
    # Twins and namesakes registered one after the other: serials 0001 / 0002.
    for fields in ({"gender": None}, {"name": "Budi Santosa"}):
        first, next_one = _pair(NEXT_SERIAL, **fields)
        assert compare_demographic_pair(first, next_one, SETTINGS).outcome == REVIEW


def test_dates_must_be_stated_real_and_equal():
    first, undated = _pair(TENS_TYPO, birth=None)
    assert compare_demographic_pair(first, undated, SETTINGS).outcome != MERGE
    placeholder_man = "3201010101900001"
    first = record(patient("a", name="Budi Santoso", birth="1990-01-01", nik=placeholder_man, gender=None))
    other = record(patient("b", name="Budi Santoso", birth="1990-01-01", nik="3201010101900011"))
    assert compare_demographic_pair(first, other, SETTINGS).outcome != MERGE
