"""The guard on the one-digit NIK merge: twins registered together (``shared.domain.registered_together``)."""

from __future__ import annotations

from shared.config import Settings
from shared.domain.pair_rules import MERGE, REVIEW, compare_demographic_pair
from shared.domain.patient import member_record, patient_facts
from shared.domain.registered_together import registered_together

SETTINGS = Settings()
PHONE = "081234567890"


def record(pid: str, nik: str, *, name: str = "Muhammad Rizki", phone: str | None = PHONE) -> dict:
    resource = {"resourceType": "Patient", "id": pid, "name": [{"text": name}], "birthDate": "2012-04-03",
                "gender": "male", "identifier": [{"system": SETTINGS.nik_system, "value": nik}]}
    if phone:
        resource["telecom"] = [{"system": "phone", "value": phone}]
    return {**member_record(patient_facts(resource, SETTINGS)), "status": "active"}


def test_twins_of_one_name_and_home_with_consecutive_serials_go_to_review():
    # Twins registered together: serials 0001 and 0002, one name, one phone, no multipleBirth on either
    # record. The same pair as a last-digit serial typo: a human decides.
    first, second = record("a", "3310030304120001"), record("b", "3310030304120002")
    assert registered_together(first, second, household=True)
    decision = compare_demographic_pair(first, second, SETTINGS)
    assert (decision.outcome, decision.reason) == (REVIEW, "nik-one-digit-review")


def test_a_serial_typo_in_another_digit_still_merges_at_home():
    first, typo = record("a", "3310030304120001"), record("b", "3310030304120301")
    assert not registered_together(first, typo, household=True)
    assert compare_demographic_pair(first, typo, SETTINGS).outcome == MERGE


def test_the_guard_needs_a_household_and_a_last_digit_difference():
    first, second = record("a", "3310030304120001"), record("b", "3310030304120002")
    assert not registered_together(first, second, household=False)
    assert not registered_together(first, record("c", "3310030304120001"), household=True)   # one NIK
    assert not registered_together(first, record("d", "3310030304120010"), household=True)   # two digits



def without_nik(pid: str, name: str, birth: str) -> dict:
    resource = {"resourceType": "Patient", "id": pid, "name": [{"text": name}], "birthDate": birth,
                "gender": "female", "telecom": [{"system": "phone", "value": PHONE}]}
    return {**member_record(patient_facts(resource, SETTINGS)), "status": "active"}


def test_twins_of_near_names_stay_apart_when_one_birth_date_has_day_and_month_swapped():
    # Twins "Dewi Lestari" / "Dewi Listari" of one phone, no NIK on either record, one birth date written
    # 04-03 for 03-04: near names in one household are relatives, whatever the dates say.
    first = without_nik("a", "Dewi Lestari", "2012-04-03")
    assert compare_demographic_pair(first, without_nik("b", "Dewi Listari", "2012-03-04"), SETTINGS).outcome == REVIEW
    # The same name, birth date and household: still the one person the model merges.
    assert compare_demographic_pair(first, without_nik("c", "Dewi Lestari", "2012-04-03"), SETTINGS).outcome == MERGE
