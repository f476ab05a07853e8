"""NIKs one digit apart in the date part (``pair_rules._one_digit_merge_allowed``): a typo that shows (the
digit makes one record's NIK disagree with its own birth date), and the household guard on it.

The guard is not about twins: twins share their birth date, so their NIKs share the date part and differ in
the serial (``registered_together``). Two real NIKs one date digit apart belong to people of one
kecamatan, sex and serial born on dates one digit apart; in one household, with one name, that is a
relative of another generation named after the other (a junior: "Budi Santoso" born 1965-05-15 and his son
"Budi Santoso" born 1995-05-15, both serial 0001) whose record took the other's birth date from the family
card. Only a year digit can make that: a day or month digit apart with the same year is no other
generation, so in a household only the year digits stay in review.
"""

from __future__ import annotations

from shared.domain.pair_rules import MERGE, REVIEW, compare_demographic_pair
from tests.unit.test_matching import SETTINGS, patient, record

PHONE = "081234567890"
FATHER_NIK = "3201011505650001"   # a man born 1965-05-15
SON_NIK = "3201011505950001"      # a man born 1995-05-15: digit 10 differs
MONTH_TYPO = "3201011506650001"   # the father's NIK with the month typed 06: digit 9


def test_a_date_digit_typo_that_shows_merges_away_from_home():
    father = record(patient("a", name="Budi Santoso", birth="1965-05-15", nik=FATHER_NIK))
    typo = record(patient("b", name="Budi Santoso", birth="1965-05-15", nik=MONTH_TYPO))
    assert typo["nik_issues"] and not father["nik_issues"]
    assert compare_demographic_pair(father, typo, SETTINGS).outcome == MERGE


def test_a_day_or_month_digit_typo_merges_at_home_too():
    # The same person's records share the household; a day or month digit cannot be another generation.
    father = record(patient("a", name="Budi Santoso", birth="1965-05-15", nik=FATHER_NIK, phone=PHONE))
    typo = record(patient("b", name="Budi Santoso", birth="1965-05-15", nik=MONTH_TYPO, phone=PHONE))
    decision = compare_demographic_pair(father, typo, SETTINGS)
    assert (decision.outcome, decision.reason) == (MERGE, "nik-one-digit-match")


def test_a_year_digit_at_home_is_a_junior_of_another_generation_and_stays_in_review():
    # The son's record carries his own NIK but his father's birth date, copied from the family card: his
    # NIK disagrees with the record (the "typo shows"), everything else agrees, and they live together.
    father = record(patient("a", name="Budi Santoso", birth="1965-05-15", nik=FATHER_NIK, phone=PHONE))
    son = record(patient("b", name="Budi Santoso", birth="1965-05-15", nik=SON_NIK, phone=PHONE))
    assert son["nik_issues"] and not father["nik_issues"]
    assert compare_demographic_pair(father, son, SETTINGS).outcome == REVIEW
    # Away from home the same year-digit typo merges, as any date-part typo that shows.
    apart = record(patient("b", name="Budi Santoso", birth="1965-05-15", nik=SON_NIK))
    assert compare_demographic_pair(record(patient("a", name="Budi Santoso", birth="1965-05-15",
                                                   nik=FATHER_NIK)), apart, SETTINGS).outcome == MERGE
