"""The review band keeps only ambiguous candidate pairs (shared/domain/review_band.py): agreement that many
different people of one district share is "no match", not a review item."""

from __future__ import annotations

from shared.domain.pair_rules import NO_MATCH, REVIEW, compare_demographic_pair
from tests.unit.test_matching import SETTINGS, patient, record

# A man whose birth date is unknown: registries write 1 January, and his NIK then encodes 01 01.
NIK_PLACEHOLDER = "3201010101900001"


def test_a_placeholder_birth_date_without_a_nik_on_both_is_no_match():
    # Name, "birth date" and sex agree, but the date is the 1 January placeholder: a name and a year.
    a = record(patient("a", birth="1990-01-01", nik=None))
    b = record(patient("b", birth="1990-01-01", nik=NIK_PLACEHOLDER))
    decision = compare_demographic_pair(a, b, SETTINGS)
    assert (decision.outcome, decision.reason, decision.evidence["weak"]) == (NO_MATCH, "weak-evidence",
                                                                            "placeholder-date")
    # The same pair on a real birth date stays a review item.
    real = compare_demographic_pair(record(patient("c", nik=None)), record(patient("d")), SETTINGS)
    assert (real.outcome, real.reason) == (REVIEW, "model-review")


def test_a_placeholder_date_pair_sharing_an_address_stays_in_review():
    a = record(patient("a", birth="1990-01-01", nik=None, address="Jl. Kaliurang 5"))
    b = record(patient("b", birth="1990-01-01", nik=None, address="JL. KALIURANG 5"))
    assert compare_demographic_pair(a, b, SETTINGS).outcome == REVIEW


def test_neighbouring_niks_on_a_placeholder_date_are_namesakes():
    # Consecutive serials of one kecamatan, sex and the 1 January date: namesakes, not a typo.
    a = record(patient("a", birth="1990-01-01", nik=NIK_PLACEHOLDER))
    b = record(patient("b", birth="1990-01-01", nik="3201010101900002"))
    decision = compare_demographic_pair(a, b, SETTINGS)
    assert (decision.outcome, decision.evidence["weak"]) == (NO_MATCH, "placeholder-nik-neighbour")
    # On a real date the same neighbours still go to a human (a serial typo of one person).
    real = compare_demographic_pair(record(patient("c")), record(patient("d", nik="3201011505900002")), SETTINGS)
    assert (real.outcome, real.reason) == (REVIEW, "nik-one-digit-review")


def test_two_different_phones_and_nothing_shared_are_two_households():
    a = record(patient("a", nik=None, phone="081234567890"))
    b = record(patient("b", phone="085711112222"))
    decision = compare_demographic_pair(a, b, SETTINGS)
    assert (decision.outcome, decision.evidence["weak"]) == (NO_MATCH, "other-phones")
    # With a shared address besides, the other rules decide (here: the model merges).
    c = record(patient("c", nik=None, phone="081234567890", address="Jl. Kaliurang 5"))
    d = record(patient("d", phone="085711112222", address="Jl. Kaliurang 5"))
    assert compare_demographic_pair(c, d, SETTINGS).outcome != NO_MATCH
