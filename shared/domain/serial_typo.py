"""NIKs one typo apart in the serial's first three digits: one person's NIK typed wrong. Pure.

Serials run from 0001 per kecamatan, birth date and sex, handed out in order, and a kecamatan registers a
handful of people per real birth date and sex. Two different people of one kecamatan, birth date and sex
(twins registered together, namesakes) therefore hold serials that differ in the last digit (0001 /
0002), not in the first three (0001 / 0101, 0011). The two NIKs also share every digit of the date part,
so they encode one birth date and one sex: when neither disagrees with its own record, both records'
stated birth dates are that date, and a record that states no sex carries the same one through its NIK.
Such a pair is held to what the NIK group holds one NIK to: the same real birth date stated on both
records, no sex conflict, and a name at ``nik_name_match_threshold``. A 1 January date is a placeholder
that many namesakes share (their serials run high on it): never merged this way.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.config import Settings
from shared.domain.identity_evidence import is_placeholder_date, nik_issues
from shared.domain.nik_features import typo_digits

FIRST_SERIAL_DIGITS = range(12, 15)
SERIAL_DIGITS = range(12, 16)


def in_serial(shared_masks) -> bool:
    """NIKs one typo apart (``shared_masks``: the masks the two NIKs share) within the serial (digits 12-15)."""
    return any(all(digit in SERIAL_DIGITS for digit in typo_digits(mask)) for mask in shared_masks)


# Month-day of the dates a KTP carries when the day is unknown (besides 1 January, ``is_placeholder_date``).
KTP_PLACEHOLDER_DAYS = frozenset({"07-01", "12-31"})


def namesakes_of_two_kecamatans(a: Mapping, b: Mapping, shared_masks) -> bool:
    """Two NIKs one digit apart outside the serial (the region digits: they share date and serial) on a
    KTP placeholder date (1 July, 31 December). Such NIKs belong to the people registered first (serial
    0001) on one date and sex in two neighbouring kecamatans, and a placeholder date is shared by many of
    one village's elderly, of one given name too ("Wagiman"), at one address line (red-team seed 22). A
    person re-registered in the next kecamatan (two NIKs) at one household with a real date still merges."""
    return not in_serial(shared_masks) and str(a.get("birth_date") or "")[5:] in KTP_PLACEHOLDER_DAYS


def first_serial_digits_typo(a: Mapping, b: Mapping, score: float, fields: Mapping[str, str],
                             settings: Settings) -> bool:
    """The two records' NIKs differ by one substitution or adjacent transposition within NIK digits 12-14
    (``nik_masks``), neither NIK disagrees with its record, both records state the same real birth date,
    their sexes do not conflict and the name scores at least ``nik_name_match_threshold``."""
    shared = set(a.get("nik_masks") or ()) & set(b.get("nik_masks") or ())
    if not any(all(digit in FIRST_SERIAL_DIGITS for digit in typo_digits(mask)) for mask in shared):
        return False
    if nik_issues(a) or nik_issues(b) or is_placeholder_date(a.get("birth_date")):
        return False
    return (fields["birth_date"] == "agree" and fields["gender"] != "conflict"
            and score >= settings.nik_name_match_threshold)
