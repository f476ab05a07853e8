"""A placeholder birth date under one NIK is an unknown date (``shared.domain.placeholder_birth_date``)."""

from __future__ import annotations

from shared.domain.pair_rules import MERGE, REVIEW, compare_nik_pair
from shared.domain.placeholder_birth_date import placeholder_as_unknown
from tests.unit.test_matching import NIK_MAN, SETTINGS, patient, record

PHONE = "081234567890"
PLACEHOLDER_NIK = "3201010101900001"   # a man "born" 1990-01-01: the NIK itself carries the placeholder


def _pair(placeholder: str, **fields):
    real = record(patient("a", name="Budi Santoso", nik=NIK_MAN, phone=PHONE))
    unknown = record(patient("b", name="Budi Santoso", birth=placeholder, nik=NIK_MAN, phone=PHONE) | fields)
    return real, unknown


def test_a_placeholder_date_on_one_record_merges_as_a_date_the_nik_fills():
    # "1 January of the year", 1970-01-01 and 1900-01-01: what registries write for an unknown date.
    for placeholder in ("1990-01-01", "1970-01-01", "1900-01-01"):
        real, unknown = _pair(placeholder)
        assert unknown["nik_issues"] == ["nik-birthdate-mismatch"]
        decision = compare_nik_pair(real, unknown, SETTINGS)
        assert decision.outcome == MERGE, placeholder
        # The date is read as unknown, not as agreeing: the NIK cannot count twice.
        assert decision.evidence["fields"]["birth_date"] == "missing"


def test_read_as_unknown_only_when_the_placeholder_is_the_whole_disagreement():
    real, unknown = _pair("1970-01-01")
    seen = placeholder_as_unknown(unknown, real)
    assert seen["birth_date"] == "1990-05-15" and "birth_date" in seen["derived"] and not seen["nik_issues"]
    # A real date the NIK contradicts stays a mismatch (a relative's NIK, a typo: other rules).
    typed = record(patient("b", name="Budi Santoso", birth="1991-06-15", nik=NIK_MAN))
    assert placeholder_as_unknown(typed, real) is typed
    # A wrong sex as well: the NIK is not this record's as written.
    woman = record(patient("b", name="Budi Santoso", birth="1970-01-01", gender="female", nik=NIK_MAN))
    assert placeholder_as_unknown(woman, real) is woman
    # The other record states no date either: both dates are the NIK's, as for two records without one.
    undated = record(patient("a", name="Budi Santoso", birth=None, nik=NIK_MAN))
    assert placeholder_as_unknown(unknown, undated)["birth_date"] == "1990-05-15"
    # A NIK that encodes 1 January itself: left to ``nik-placeholder-date``.
    on_placeholder = record(patient("a", birth="1990-01-01", nik=PLACEHOLDER_NIK))
    other = record(patient("b", birth="1970-01-01", nik=PLACEHOLDER_NIK))
    assert placeholder_as_unknown(other, on_placeholder) is other


def test_a_placeholder_date_is_decided_as_a_missing_date():
    # Whatever the name, the pair gets the decision of a record that states no date (rule and outcome).
    real, _ = _pair("1990-01-01")
    for name in ("Budi Santoso", "Budi Santosa", "Budi", "Bude Santosa", "Agus Salim"):
        placeholder = compare_nik_pair(real, record(patient("b", name=name, birth="1970-01-01", nik=NIK_MAN)),
                                       SETTINGS)
        missing = compare_nik_pair(real, record(patient("b", name=name, birth=None, nik=NIK_MAN)), SETTINGS)
        assert (placeholder.outcome, placeholder.reason) == (missing.outcome, missing.reason), name
    # Without the rule the placeholder record would be a NIK mismatch; a very different name stays apart.
    assert compare_nik_pair(real, record(patient("b", name="Agus Salim", birth="1970-01-01", nik=NIK_MAN)),
                            SETTINGS).outcome == REVIEW


def test_a_relative_of_the_household_with_the_name_keeps_a_placeholder_record_in_review():
    # A son named after his father, his date unknown (1 January), under his father's NIK: a household member
    # under another NIK bears the name, so the record may be his (``_relative_namesake``).
    real, unknown = _pair("1990-01-01")
    son = record(patient("s", name="Budi Santoso", birth="2015-03-02", nik="3201010203150001", phone=PHONE))
    decision = compare_nik_pair(real, unknown, SETTINGS, neighbours=(son | {"household": True},))
    assert decision.outcome == REVIEW
