"""Which candidate blocks a record joins (``shared.domain.block_variants``): the name + birth year block
only for a record whose NIK does not vouch for its birth date and sex, and a NIK-less record's birth-date
blocks of its other possible sex and of its day and month swapped, so that the pairs that block found
between such a record and a NIK holder are still compared."""

from __future__ import annotations

from shared.domain.patient import candidate_blocks, labelled_blocks, patient_facts
from tests.unit.test_matching import SETTINGS, patient

MONTH_TYPO = "3201011506900001"   # NIK_MAN with the month typed 06: it disagrees with 1990-05-15


def kinds(resource: dict) -> list[str]:
    return [kind for kind, _ in labelled_blocks(patient_facts(resource, SETTINGS), SETTINGS)]


def shared_blocks(a: dict, b: dict) -> set[str]:
    return set(candidate_blocks(patient_facts(a, SETTINGS), SETTINGS)) & set(
        candidate_blocks(patient_facts(b, SETTINGS), SETTINGS))


def test_a_nik_that_agrees_with_the_record_needs_no_name_year_block():
    assert "name-year" not in kinds(patient("a"))


def test_a_record_the_nik_does_not_vouch_for_keeps_the_name_year_block():
    assert "name-year" in kinds(patient("a", nik=None))                 # no NIK
    assert "name-year" in kinds(patient("a", nik=MONTH_TYPO))           # a NIK that disagrees
    assert "name-year" in kinds(patient("a", birth=None))               # a birth date taken from the NIK
    assert "name-year" in kinds(patient("a", nik="12345"))              # an invalid NIK


def test_a_nik_less_record_without_a_sex_meets_the_nik_holder_of_its_birth_date():
    holder, unsexed = patient("a"), patient("b", nik=None, gender=None)
    assert shared_blocks(holder, unsexed)
    assert kinds(unsexed).count("birth-date-variant") == 2             # no sex: both sexes' blocks


def test_a_nik_less_record_with_day_and_month_swapped_meets_the_nik_holder():
    holder, swapped = patient("a", birth="1990-05-03", nik="3201010305900001"), patient("b", birth="1990-03-05",
                                                                                           nik=None)
    assert shared_blocks(holder, swapped)
    assert kinds(patient("c", birth="1990-05-15", nik=None)).count("birth-date-variant") == 0   # day 15: no month


def test_a_nik_holder_and_a_newborn_join_no_variant_block():
    assert "birth-date-variant" not in kinds(patient("a", gender=None, birth="1990-03-05"))
    baby = patient("b", name="By. Ny. Siti Aminah", birth="2024-03-05", gender=None, nik=None)
    assert "birth-date-variant" not in kinds(baby)


def test_every_block_is_a_keyed_token_of_fixed_length():
    for resource in (patient("a"), patient("b", nik=None, gender=None, birth="1990-03-05")):
        assert all(len(block) == 32 and "1990" not in block
                   for block in candidate_blocks(patient_facts(resource, SETTINGS), SETTINGS))
