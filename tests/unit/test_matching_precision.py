"""Issue 13's held-out false pairs as rules, and the typo-tolerant home comparison (pure, plus one service
test for the household read). Each rule is a pattern of legacy data, not a case of one generator."""

from __future__ import annotations

from shared.domain.pair_rules import MERGE, REVIEW, compare_demographic_pair, compare_nik_pair, nik_neighbours
from shared.domain.places import home_forms, same_home, typo_variants
from tests.fakes import FakeServices
from tests.unit.test_matching import NIK_MAN, SETTINGS, patient, record
from tests.unit.test_matching_service import add, event

FATHER_PHONE = "085728148646"
HOME = "Dsn. Krajan RT 12/RW 1, Ds. Margomulyo"


# ------------------------------------------------------------------ typo-tolerant homes

def test_typo_variants_share_a_form_for_one_typo_and_short_words_stay_exact():
    for typo in ("tegalrjeo", "tegalreja", "tegalrejjo", "tegalejo"):      # swap, change, insert, drop
        assert typo_variants("tegalrejo") & typo_variants(typo), typo
    assert not typo_variants("karanganyar") & typo_variants("karangasem")
    assert typo_variants("sari") == {"sari"} and not typo_variants("sari") & typo_variants("sawi")


def test_home_forms_are_the_first_place_and_the_first_line_without_spaces():
    assert home_forms(["langdon", "avenue"], ["94 langdon avenue", "jandarra"]) == ("langdon", "langdonavenue")
    # A cut word keeps its short piece; a wider area's name (the kecamatan) is left out.
    assert home_forms(["boron", "drive"], ["101 boron ia drive"]) == ("boron", "boroniadrive")
    assert home_forms(["tegalrejo", "margoagung"], ["Dusun Tegalrejo, Margoagung, Kec. Seyegan"]) == (
        "tegalrejo", "tegalrejomargoagung")
    assert home_forms([], None) == ()


def test_a_typo_or_a_lost_space_in_the_home_is_one_home_and_two_hamlets_stay_two():
    def home(address):
        return record(patient("x", address=address))

    assert same_home(home("Dusun Tegalrejo RT 6 RW 17, Desa Sumberarum"), home("Dsn. Tegalrjeo, Ds. Sumberarum"))
    assert same_home(home("94 langdon avenue"), home("94 langdoneavenue"))
    assert same_home(home("41 macneil place"), home("41 macneilplace"))
    assert not same_home(home("Dusun Nglempong RT 2 RW 18 Desa Sumberharjo"),
                         home("Dusun Karanganyar RT 6 RW 13 Desa Sumberharjo"))
    assert not same_home(home("Dusun Karanganyar, Sumberharjo"), home("Dusun Karangasem, Sumberharjo"))


def test_one_nik_with_a_typo_in_the_home_merges_and_two_homes_still_go_to_review():
    a = record(patient("a", name="Paijo Hidayat", address="Dusun Tegalrejo RT 006 RW 017 Desa Sumberarum"))
    typo = record(patient("b", name="Paijo Hidayat", address="Dusun Tegalrjeo RT 006 RW 017 Desa Sumberarum"))
    assert compare_nik_pair(a, typo, SETTINGS).outcome == MERGE
    other = record(patient("b", name="Paijo Hidayat", address="Dusun Jetis RT 009 RW 003 Desa Sumberrahayu"))
    assert compare_nik_pair(a, other, SETTINGS).reason == "nik-home-conflict"


# ------------------------------------------------------------------ a NIK whose last digit was cut off

def test_a_nik_with_serial_0000_is_a_damaged_nik_and_merges_only_with_something_shared():
    damaged = NIK_MAN[:12] + "0000"        # no NIK is issued with serial 0000: a spreadsheet cut its last digit
    a = record(patient("a", name="Siti", gender="female", nik="3201015505900000", address=HOME))
    b = record(patient("b", name="Hj. Siti", birth=None, gender=None, nik="3201015505900000",
                       phone=FATHER_PHONE))
    assert "serial-zero" in a["nik_issues"] and "serial-zero" in record(patient("c", nik=damaged))["nik_issues"]
    decision = compare_nik_pair(a, b, SETTINGS)
    assert (decision.outcome, decision.reason) == (REVIEW, "nik-serial-lost")
    shared = record(patient("b", name="Hj. Siti", birth=None, gender=None, nik="3201015505900000",
                            phone=FATHER_PHONE, address=HOME))
    assert compare_nik_pair(a, shared, SETTINGS).outcome == MERGE
    assert "serial-zero" not in record(patient("d"))["nik_issues"]


# ------------------------------------------------------------------ a relative's NIK, no birth date

def _son_under_fathers_nik(**fields):
    return record(patient("s", name="Arsyad Rahim", birth=None, nik=NIK_MAN, phone=FATHER_PHONE, address=HOME,
                          **fields))


def test_a_record_without_its_birth_date_beside_a_household_namesake_under_another_nik_is_reviewed():
    # The father "Arsyad Rahim" owns the NIK; his son of the same name, whose own records carry his own
    # NIK, has one record under the father's NIK and without a birth date: nothing on it can disagree.
    father = record(patient("f", name="ARSYAD RAHIM", birth="1990-05-15", nik=NIK_MAN, phone=FATHER_PHONE,
                            address=HOME))
    son_own = record(patient("o", name="Arsyad Rahim", birth="2012-03-04", nik="3201010403120001",
                             phone=FATHER_PHONE, address=HOME))
    relative = _son_under_fathers_nik()
    household = nik_neighbours({"o": son_own, "f": father}, father["nik_token"], household=True)
    assert [n["household"] for n in household] == [True] and household[0]["nik_token"] == son_own["nik_token"]
    assert compare_nik_pair(father, relative, SETTINGS).outcome == MERGE          # the household alone
    for a, b in ((father, relative), (relative, father)):
        decision = compare_nik_pair(a, b, SETTINGS, neighbours=household)
        assert (decision.outcome, decision.reason) == (REVIEW, "nik-relative-namesake")
    # The record states its birth date (the NIK agrees with it): the NIK vouches for it.
    stated = record(patient("s", name="Arsyad Rahim", nik=NIK_MAN, phone=FATHER_PHONE, address=HOME))
    assert compare_nik_pair(father, stated, SETTINGS, neighbours=household).outcome == MERGE
    # A household member of another name (a sibling) is no namesake; nor is a namesake of the NIK prefix
    # block (``household`` unset): that is the serial-typo rule's.
    sibling = nik_neighbours({"o": record(patient("o", name="Eko Rahim", birth="2012-03-04",
                                                  nik="3201010403120001", phone=FATHER_PHONE))},
                             father["nik_token"], household=True)
    assert compare_nik_pair(father, relative, SETTINGS, neighbours=sibling).outcome == MERGE
    prefix = nik_neighbours({"o": son_own}, father["nik_token"])
    assert compare_nik_pair(father, relative, SETTINGS, neighbours=prefix).reason != "nik-relative-namesake"


def test_the_service_reads_the_household_before_the_nik_group_decides():
    world = FakeServices(SETTINGS)
    home = {"phone": FATHER_PHONE, "address": [{"line": [HOME]}]}
    father = add(world, "Arsyad Rahim", NIK_MAN, birth="1990-05-15", **home)
    son_own = add(world, "Arsyad Rahim", "3201010403120001", birth="2012-03-04", **home)
    relative = add(world, "Arsyad Rahim", NIK_MAN, birth=None, **home)
    for resource in (father, son_own):
        world.matching.handle_change(event(resource))
    outcome = world.matching.handle_change(event(relative))
    assert "nik-relative-namesake" in outcome.reviews and world.merge_requests_published() == []


# ------------------------------------------------------------------ one of a multiple birth, order unknown

def test_a_twins_record_is_never_merged_by_demographics_with_a_record_that_does_not_say_which_twin():
    twin = record(patient("t", name="Zainal Hidayat", birth="2016-09-17", nik="3201011709160001", multiple=1,
                          phone=FATHER_PHONE,
                          address="Dusun Pundung, Bokoharjo"))
    unknown = record(patient("u", name="An. Zaenal Hidajat", birth="2016-09-17", nik=None, phone=FATHER_PHONE,
                             address="PUNDUNG 03/19 BOKOHARJO"))
    assert compare_demographic_pair(twin, unknown, SETTINGS).outcome == REVIEW
    same_order = record(patient("u", name="An. Zaenal Hidajat", birth="2016-09-17", nik=None, multiple=1,
                                phone=FATHER_PHONE, address="PUNDUNG 03/19 BOKOHARJO"))
    assert compare_demographic_pair(twin, same_order, SETTINGS).outcome == MERGE
