"""Identity evidence of one pair of index records (``shared.domain.patient.member_record``): what tells one
person from a namesake or a relative when the rules of ``shared.domain.pair_rules`` weigh a pair. Pure.

Each predicate is a pattern of legacy registry data (docs/matching.md, "Matching model (issue 13)").
"""

from __future__ import annotations

from collections.abc import Mapping


def nik_issues(member: Mapping) -> set[str]:
    """The record's NIK disagrees with its own birth date or sex (an invalid NIK is no NIK, not an issue)."""
    return {i for i in member.get("nik_issues") or [] if not i.startswith("invalid-nik")}


def is_placeholder_date(birth_date: object) -> bool:
    """1 January: what registries write when the birth date is unknown (and the date a NIK then encodes)."""
    return isinstance(birth_date, str) and birth_date[5:] == "01-01"


def states_birth_date(record: Mapping) -> bool:
    return bool(record.get("birth_date")) and "birth_date" not in (record.get("derived") or ())


def digits_apart(date_a: str, date_b: str) -> int:
    return sum(x != y for x, y in zip(date_a, date_b, strict=True)) if len(date_a) == len(date_b) else 99


def date_typo_under_nik(a: Mapping, b: Mapping, evidence: dict) -> bool:
    """Under one NIK, the NIK agrees with exactly one record's birth date, the other record's stated date is
    one character away from it (a typed date: "1984-03-12" / "1994-03-12"; a typo within the year the model
    already weighs as the same year) or has day and month swapped,
    the sexes agree and the names agree (exact, or a near name the model rates ``high``): the NIK settles
    which date is right, so it is one person with a typo in the date. A relative's NIK on a record
    ("nik-relative" in the look-alike data) disagrees with that record's date in the year and beyond, and
    its name differs; a twin's NIK agrees with both dates (then this rule is not reached)."""
    if evidence["fields"]["gender"] != "agree" or not (states_birth_date(a) and states_birth_date(b)):
        return False
    if evidence["model"]["comparisons"]["name"]["level"] not in ("exact", "high"):
        return False
    if bool(nik_issues(a)) == bool(nik_issues(b)):
        return False
    if not all(nik_issues(r) <= {"nik-birthdate-mismatch"} for r in (a, b)):
        return False
    date_a, date_b = str(a["birth_date"]), str(b["birth_date"])
    swapped = date_a[:4] == date_b[:4] and date_a[5:7] == date_b[8:10] and date_a[8:10] == date_b[5:7]
    return digits_apart(date_a, date_b) == 1 or swapped
