"""Issue 13's recall round: rules that merge what review held and the data settle (pure pair rules).

Each test checks the merge and the look-alike the rule must still leave to a human."""

from __future__ import annotations

from shared.domain.pair_rules import MERGE, NO_MATCH, REVIEW, compare_demographic_pair, compare_nik_pair
from shared.domain.places import one_address
from tests.unit.test_matching import NIK_MAN, NIK_WOMAN, SETTINGS, patient, record

# One address in two systems' forms: the keyed address lines differ, the place names are the same.
ADDRESS_SIMRS = "Dsn. Tegalrejo RT 1/RW 10, Ds. Margoagung"
ADDRESS_SIMPUS = "TEGALREJO 01/10 MARGOAGUNG"
OTHER_VILLAGE = "Dusun Tegalrejo RT 3 RW 2, Desa Sumberarum"     # a hamlet name repeats in another village
PLACEHOLDER_NIK = "3201014101900002"                              # a woman "born" 1990-01-01


# ------------------------------------------------------------------ one address in two forms

def test_one_address_needs_every_place_of_one_record_named_by_the_other_and_two_places_each():
    def at(address):
        return record(patient("x", address=address))

    assert one_address(at(ADDRESS_SIMRS), at(ADDRESS_SIMPUS))
    assert not one_address(at(ADDRESS_SIMRS), at(OTHER_VILLAGE))          # same hamlet, other village
    assert not one_address(at("Dusun Tegalrejo"), at(ADDRESS_SIMPUS))     # a hamlet alone names no home
    assert not one_address(at(ADDRESS_SIMRS), record(patient("y")))       # no address


def _nikless(**fields):
    values = {"name": "Budi Santoso", "nik": None, "address": ADDRESS_SIMPUS} | fields
    return record(patient("b", **values))


def test_without_one_nik_name_birth_date_sex_and_one_address_still_do_not_merge():
    # Tried and withdrawn (docs/matching.md): namesakes of one name and birth date at one address exist in
    # the held-out look-alike districts, and nothing on the records tells them apart. A human decides.
    a = record(patient("a", name="Budi Santoso", address=ADDRESS_SIMRS))
    assert compare_demographic_pair(a, _nikless(), SETTINGS).outcome == REVIEW
    # One shared address line, phone or identifier lets the model merge, as before.
    assert compare_demographic_pair(a, _nikless(address=ADDRESS_SIMRS), SETTINGS).outcome == MERGE
    # Twins stay apart whatever they share.
    twin = record(patient("a", name="Budi Santoso", multiple=1, address=ADDRESS_SIMRS))
    assert compare_demographic_pair(twin, _nikless(multiple=2, address=ADDRESS_SIMRS), SETTINGS).outcome == NO_MATCH


# ------------------------------------------------------------------ under one NIK: one address

def test_under_one_nik_a_single_given_name_held_in_the_other_merges_at_one_address():
    full = record(patient("a", name="Budi Santoso", address=ADDRESS_SIMRS))
    short = record(patient("b", name="Budi", address=ADDRESS_SIMPUS))
    decision = compare_nik_pair(full, short, SETTINGS)
    assert (decision.outcome, decision.reason) == (MERGE, "model-match")
    # Without anything shared it stays in review (a serial typo hitting a namesake "Budi" of that date).
    assert compare_nik_pair(full, record(patient("b", name="Budi")), SETTINGS).outcome == REVIEW
    # Another hamlet: review.
    elsewhere = record(patient("b", name="Budi", address="Dusun Jetis RT 9 RW 3, Desa Sumberrahayu"))
    assert compare_nik_pair(full, elsewhere, SETTINGS).outcome == REVIEW
    # The same hamlet name in another village of the kecamatan: review (hamlet names repeat).
    namesake_hamlet = record(patient("b", name="Budi", address=OTHER_VILLAGE))
    assert compare_nik_pair(full, namesake_hamlet, SETTINGS).outcome == REVIEW


def test_under_one_nik_a_placeholder_date_merges_at_one_address():
    a = record(patient("a", name="Siti Aminah", birth="1990-01-01", gender="female", nik=PLACEHOLDER_NIK,
                       address=ADDRESS_SIMRS))
    home = record(patient("b", name="Siti Aminah", birth="1990-01-01", gender="female", nik=PLACEHOLDER_NIK,
                          address=ADDRESS_SIMPUS))
    assert compare_nik_pair(a, home, SETTINGS).outcome == MERGE
    apart = record(patient("b", name="Siti Aminah", birth="1990-01-01", gender="female", nik=PLACEHOLDER_NIK))
    assert compare_nik_pair(a, apart, SETTINGS).reason == "nik-placeholder-date"


# ------------------------------------------------------------------ under one NIK: a typed date

def test_under_one_nik_a_one_character_date_typo_that_the_nik_settles_merges():
    right = record(patient("a", name="Dewi Lestari", gender="female", nik=NIK_WOMAN))
    # A year typed wrong ("1980" for "1990"): the model alone weighs a date in another year as two people.
    typo = record(patient("b", name="Dewi Lestari", birth="1980-05-15", gender="female", nik=NIK_WOMAN))
    assert typo["nik_issues"] and not right["nik_issues"]
    decision = compare_nik_pair(right, typo, SETTINGS)
    assert (decision.outcome, decision.reason) == (MERGE, "nik-date-typo")
    # Not one character, not a swap (a 1 January placeholder is an unknown date instead: test_placeholder_birth_date).
    far = record(patient("b", name="Dewi Lestari", birth="1975-08-20", gender="female", nik=NIK_WOMAN))
    assert compare_nik_pair(right, far, SETTINGS).outcome == REVIEW
    # Day and month swapped on one record: the NIK says which date is right; with the names agreeing the
    # model merges it (its day-month-swapped level), with a name held in the other it stays in review (a
    # relative's NIK: "Piliang" / "Yulnida Piliang").
    day_month = record(patient("a", name="Dewi Lestari", birth="1990-11-05", gender="female",
                               nik="3201014511900002"))
    swap = record(patient("b", name="Dewi Lestari", birth="1990-05-11", gender="female", nik="3201014511900002"))
    assert compare_nik_pair(day_month, swap, SETTINGS).outcome == MERGE
    held = record(patient("b", name="Dewi", birth="1990-05-11", gender="female", nik="3201014511900002"))
    assert compare_nik_pair(day_month, held, SETTINGS).outcome == REVIEW


def test_a_relatives_nik_with_another_birth_date_or_another_name_stays_in_review():
    owner = record(patient("a", name="Budi Santoso", nik=NIK_MAN))
    # The son named after his father, under the father's NIK: his own birth date is decades away.
    son = record(patient("b", name="Budi Santoso", birth="2015-05-15", nik=NIK_MAN))
    assert compare_nik_pair(owner, son, SETTINGS).outcome == REVIEW
    # One character away but a different given name: the rule needs the names to agree.
    brother = record(patient("b", name="Joko Santoso", birth="1990-05-13", nik=NIK_MAN))
    assert compare_nik_pair(owner, brother, SETTINGS).outcome == REVIEW
    # Both records disagree with the NIK: it settles nothing.
    both = record(patient("a", name="Budi Santoso", birth="1980-05-15", nik=NIK_MAN))
    other = record(patient("b", name="Budi Santoso", birth="1970-05-15", nik=NIK_MAN))
    assert compare_nik_pair(both, other, SETTINGS).outcome == REVIEW


# ------------------------------------------------------------------ NIKs one digit apart in the serial

def test_nik_one_digit_apart_in_the_serials_first_digits_merges_on_same_name_date_and_sex():
    owner = record(patient("a", name="Budi Santoso", nik=NIK_MAN))                 # serial 0001
    typo = record(patient("b", name="Budi Santoso", nik="3201011505900101"))      # serial 0101
    decision = compare_demographic_pair(owner, typo, SETTINGS)
    assert (decision.outcome, decision.reason) == (MERGE, "nik-one-digit-match")


def test_nik_one_digit_apart_in_the_last_serial_digit_or_the_region_is_a_namesake_until_shown_otherwise():
    owner = record(patient("a", name="Budi Santoso", nik=NIK_MAN))
    # Serials 0001 / 0002: the next person of that kecamatan, birth date and sex.
    assert compare_demographic_pair(owner, record(patient("b", name="Budi Santoso", nik="3201011505900002")),
                                    SETTINGS).reason == "nik-one-digit-review"
    # Kecamatan 01 / 02: a namesake of the neighbouring kecamatan with the same serial.
    assert compare_demographic_pair(owner, record(patient("b", name="Budi Santoso", nik="3201021505900001")),
                                    SETTINGS).reason == "nik-one-digit-review"
    # A near name on the next serial (twins have near names), or a placeholder date: review too. (A near
    # name in the serial's first digits is no twin: test_serial_typo.)
    assert compare_demographic_pair(owner, record(patient("b", name="Budi Santosa", nik="3201011505900002")),
                                    SETTINGS).outcome == REVIEW
    jan_a = record(patient("a", name="Budi Santoso", birth="1990-01-01", nik="3201010101900001"))
    jan_b = record(patient("b", name="Budi Santoso", birth="1990-01-01", nik="3201010101900101"))
    assert compare_demographic_pair(jan_a, jan_b, SETTINGS).outcome != MERGE


# ------------------------------------------------------------------ the breakdown tool's pair shape

def test_pair_shape_says_what_two_records_share_without_patient_data():
    from tools.calibration.pair_breakdown import pair_shape

    a = record(patient("a", name="Budi Santoso", address=ADDRESS_SIMRS, phone="081234567890"))
    b = _nikless(address=ADDRESS_SIMPUS, phone="081234567890")
    shape = pair_shape(a, b)
    assert shape == "nik=one-side name=exact birth=exact sex=agree ties=phone+home"
    assert "budi" not in shape.lower() and "0812" not in shape
