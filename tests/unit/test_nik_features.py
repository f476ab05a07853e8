"""NIK-derived features: birth date, sex, region filled for matching, marked derived, never a raw NIK."""

from datetime import date

from shared.config import Settings
from shared.domain.nik_features import nik_features, nik_masks, nik_one_digit_apart, typo_digits
from shared.domain.patient import member_record, patient_facts
from shared.nik import parse_nik

SETTINGS = Settings()
KEY = SETTINGS.nik_hash_key.get_secret_value()


def _patient(nik: str, **fields) -> dict:
    return {"resourceType": "Patient", "id": "p", "name": [{"text": "Siti Rahayu"}],
            "identifier": [{"system": SETTINGS.nik_system, "value": nik}], **fields}


def test_birth_date_sex_and_region_decoded_with_the_century_of_today():
    features = nik_features(parse_nik("3201015505900002"), KEY, today=date(2025, 6, 30))
    assert (features.birth_date, features.gender, features.region) == ("1990-05-15", "female", "320101")
    assert nik_features(parse_nik("3201011505200001"), KEY, today=date(2025, 6, 30)).birth_date == "2020-05-15"
    assert nik_features(parse_nik("3201011505300001"), KEY, today=date(2025, 6, 30)).birth_date == "1930-05-15"


def test_missing_fields_are_filled_and_marked_derived_own_fields_win():
    record = member_record(patient_facts(_patient("3201015505900002"), SETTINGS))
    assert (record["birth_date"], record["gender"], record["derived"]) == ("1990-05-15", "female",
                                                                           ["birth_date", "gender"])
    own = member_record(patient_facts(_patient("3201015505900002", birthDate="1990-05-16", gender="female"),
                                      SETTINGS))
    assert (own["birth_date"], own["derived"]) == ("1990-05-16", [])
    assert own["nik_issues"] == ["nik-birthdate-mismatch"]  # the consistency evidence stays


def test_the_derived_record_holds_no_raw_nik():
    record = member_record(patient_facts(_patient("3201015505900002"), SETTINGS))
    assert "3201015505900002" not in repr(record) and "05900002" not in repr(record)


def test_one_digit_apart_is_seen_from_the_masks_alone():
    def masks(nik):
        return nik_features(parse_nik(nik), KEY).masks
    assert nik_one_digit_apart(masks("3201015505900002"), masks("3201015505900003"))
    assert nik_one_digit_apart(masks("3201015505900002"), masks("3201015505900092"))
    assert not nik_one_digit_apart(masks("3201015505900002"), masks("3201015505900013"))


def test_two_adjacent_digits_typed_in_the_wrong_order_are_one_typo_apart():
    # Damerau distance 1: "...0012" for "...0021", or a region pair swapped ("3210..." for "3201...").
    def masks(nik):
        return nik_masks(nik, KEY)
    assert nik_one_digit_apart(masks("3201015505900012"), masks("3201015505900021"))
    assert nik_one_digit_apart(masks("3201015505900012"), masks("3210015505900012"))
    # Two swaps, or a swap of digits two places apart, are two typos.
    assert not nik_one_digit_apart(masks("3201015505900012"), masks("2301015505900021"))
    assert not nik_one_digit_apart(masks("3201015505900012"), masks("3201015505900210"))
    [shared] = set(masks("3201015505900012")) & set(masks("3201015505900021"))
    assert typo_digits(shared) == (14, 15)
    [date_swap] = set(masks("3201015505900012")) & set(masks("3201015505090012"))  # year 90 typed 09
    assert typo_digits(date_swap) == (10, 11)
