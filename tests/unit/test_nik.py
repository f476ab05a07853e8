import pytest
from pydantic import SecretStr

from shared.nik import PROVINCE_CODES, Nik, NikError, nik_consistency, nik_token, normalise_nik, parse_nik

# Woman born 5 Jan 1990 in Bogor regency (32.01), district 01, serial 0001.
WOMAN = "3201014501900001"
# Man born 17 Aug 1985 in Surabaya (35.78), district 12, serial 0042.
MAN = "3578121708850042"


@pytest.mark.parametrize("raw", [
    WOMAN, f" {WOMAN} ", "3201 0145 0190 0001", "3201.0145.0190.0001", "3201-0145-0190-0001",
    "32/01/01/450190/0001", "NIK: 3201014501900001", "nik 3201014501900001", "Nik:3201014501900001",
    "NIK-3201014501900001", f'"{WOMAN}"', f"'{WOMAN}'", f"'{WOMAN}", f"{WOMAN}.0", f"{WOMAN}.00",
    "3.201014501900001E+15", "3.201014501900001e15", "\t3201\u00a00145 0190 0001\n", int(WOMAN),
])
def test_normalise_strips_legacy_noise(raw):
    assert normalise_nik(raw) == WOMAN


@pytest.mark.parametrize("raw, reason", [
    ("", "empty"), ("   ", "empty"), ("NIK:", "empty"), (" - ", "empty"), ('""', "empty"), (None, "empty"),
    ("32010145019OOOO1", "non-digit"), ("3201014501900001x", "non-digit"), ("tidak ada", "non-digit"),
    ("٣٢٠١٠١٤٥٠١٩٠٠٠٠١", "non-digit"),  # Arabic-Indic digits are not NIK digits
    (3201014501900001.0, "non-digit"),   # a float's digits cannot be trusted
    ("3.20101450190001E+15", "non-digit"),  # 15 significant digits: the last one was lost
    ("9171014501900013.0", "non-digit"),    # above 2**53 a float may be off by one
    ("9.171014501900013E+15", "non-digit"),
    ("3.2010145019000015E+15", "non-digit"),  # not an integer
    ("320101450190001", "wrong-length"),   # 15 digits: no zero is restored (no province starts with 0)
    ("32010145019000012", "wrong-length"),  # 17 digits
    ("1234", "wrong-length"),
    ("0000000000000000", "all-zeros"), ("0", "all-zeros"), ("0000 0000 0000 0000", "all-zeros"),
])
def test_normalise_rejects_with_reason(raw, reason):
    with pytest.raises(NikError) as error:
        normalise_nik(raw)
    assert error.value.reason == reason


def test_error_message_never_contains_the_value():
    with pytest.raises(NikError) as error:
        parse_nik("3201014501900001999")
    assert "3201014501900001" not in str(error.value)


def test_decodes_a_woman_with_day_plus_40():
    nik = parse_nik("NIK: 3201.0145.0190.0001")
    assert nik == Nik(value=WOMAN, province="32", regency="01", district="01", birth_day=5, birth_month=1,
                      birth_yy=90, sex="female", serial="0001")


def test_decodes_a_man():
    nik = parse_nik(MAN)
    assert (nik.province, nik.regency, nik.district) == ("35", "78", "12")
    assert (nik.birth_day, nik.birth_month, nik.birth_yy, nik.sex, nik.serial) == (17, 8, 85, "male", "0042")


@pytest.mark.parametrize("nik, reason", [
    ("3201010001900001", "impossible-date"),  # day 00
    ("3201013201900001", "impossible-date"),  # day 32
    ("3201014001900001", "impossible-date"),  # coded 40 = day 0 for a woman
    ("3201017201900001", "impossible-date"),  # coded 72 = day 32
    ("3201013501900001", "impossible-date"),  # 35: neither a man's day nor a woman's
    ("3201011500900001", "impossible-date"),  # month 00
    ("3201011513900001", "impossible-date"),  # month 13
    ("3201013102900001", "impossible-date"),  # 31 February
    ("3201017104900001", "impossible-date"),  # a woman born 31 April
    ("3201012902010001", "impossible-date"),  # 29 Feb 1901 / 2001: no leap year either way
    ("0101011501900001", "bad-region"), ("1001011501900001", "bad-region"),
    ("2001011501900001", "bad-region"),
    ("5401011501900001", "bad-region"),  # East Timor's old code
    ("9701011501900001", "bad-region"), ("9901011501900001", "bad-region"),
    ("3200011501900001", "bad-region"),  # regency 00
    ("3201001501900001", "bad-region"),  # district 00
])
def test_parse_rejects_impossible_dates_and_regions(nik, reason):
    with pytest.raises(NikError) as error:
        parse_nik(nik)
    assert error.value.reason == reason


@pytest.mark.parametrize("nik, day, month, yy", [
    ("3201012902000001", 29, 2, 0),    # 2000 was a leap year
    ("3201016902960001", 29, 2, 96),   # a woman born 29 Feb 1996
    ("3201017112990001", 31, 12, 99),
])
def test_parse_accepts_real_calendar_dates(nik, day, month, yy):
    parsed = parse_nik(nik)
    assert (parsed.birth_day, parsed.birth_month, parsed.birth_yy) == (day, month, yy)


def test_every_listed_province_code_is_accepted_and_the_list_is_the_38_provinces():
    assert len(PROVINCE_CODES) == 38
    for code in PROVINCE_CODES:
        assert parse_nik(f"{code}01011501900001").province == code


@pytest.mark.parametrize("birth_date, gender, problems", [
    ("1990-01-05", "female", []),
    ("1990-01", "female", []),
    ("1990", "female", []),
    ("2090-01-05", "female", []),            # two-digit year compared modulo 100
    ("1990-01-05T00:00:00+07:00", "female", []),
    (None, None, []), ("", "unknown", []), ("tidak tahu", "other", []),
    ("1990-01-05", "unknown", []), ("1990-01-05", "other", []), ("1990-01-05", None, []),
    ("1990-01-05", "Female", []),
    ("1990-01-06", "female", ["nik-birthdate-mismatch"]),
    ("1990-02", "female", ["nik-birthdate-mismatch"]),
    ("1991", "female", ["nik-birthdate-mismatch"]),
    ("1990-01-05", "male", ["nik-gender-mismatch"]),
    ("1991-01-05", "male", ["nik-birthdate-mismatch", "nik-gender-mismatch"]),
])
def test_consistency_compares_only_what_is_known(birth_date, gender, problems):
    assert nik_consistency(parse_nik(WOMAN), birth_date, gender) == problems


def test_female_day_is_compared_after_removing_40():
    # A woman born on the 5th has 45 in her NIK; the Patient says the 5th, not the 45th.
    assert nik_consistency(parse_nik(WOMAN), "1990-01-05", "female") == []
    assert nik_consistency(parse_nik(MAN), "1985-08-17", "male") == []


def test_token_is_deterministic_short_hex_and_of_the_normalised_nik():
    token = nik_token(WOMAN, "k1")
    assert token == nik_token(WOMAN, "k1") == nik_token("NIK: 3201.0145.0190.0001", "k1")
    assert len(token) == 32 and all(c in "0123456789abcdef" for c in token)
    assert WOMAN not in token


def test_token_depends_on_the_key_and_accepts_bytes_str_and_secret():
    assert nik_token(WOMAN, "k1") != nik_token(WOMAN, "k2")
    assert nik_token(WOMAN, "k1") == nik_token(WOMAN, b"k1") == nik_token(WOMAN, SecretStr("k1"))
    with pytest.raises(ValueError):
        nik_token(WOMAN, "")


def test_mistyped_nik_differing_in_last_digits_gets_a_different_token():
    mistyped = WOMAN[:-2] + "10"
    assert parse_nik(mistyped).value != WOMAN
    assert nik_token(mistyped, "k") != nik_token(WOMAN, "k")


def test_baby_on_mothers_nik_decodes_to_the_mothers_birth_date_and_sex():
    # A newborn boy registered under nik-ibu: the NIK describes the mother, so it contradicts the baby.
    mother = parse_nik(WOMAN)
    assert (mother.sex, mother.birth_day, mother.birth_month, mother.birth_yy) == ("female", 5, 1, 90)
    assert nik_consistency(mother, "2024-03-02", "male") == ["nik-birthdate-mismatch", "nik-gender-mismatch"]
