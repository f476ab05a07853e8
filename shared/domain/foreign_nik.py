"""A NIK that is neither record's own: a guard on merging the two records of one NIK group. Pure.

A NIK encodes its holder's birth date and sex. When it disagrees with the stated sex or birth date of both
records that carry it, it is not the NIK of either as written: a household's KK number typed in the NIK
field (its date is the card's issue date), a parent's NIK on a child's record, a NIK copied to the wrong
line of a family list. Then the shared NIK says only "one family", and the birth date the index derives
from it agrees on both records for the same reason: neither is evidence that the two are one person, so
the pair goes to a human instead of merging (docs/matching.md, "Red-team set").
"""

from __future__ import annotations

from collections.abc import Mapping

CONSISTENCY_ISSUES = frozenset({"nik-birthdate-mismatch", "nik-gender-mismatch"})


def nik_of_neither(a: Mapping, b: Mapping) -> bool:
    """Both records' NIK disagrees with the record's own birth date or sex (``nik_issues``)."""
    return all(CONSISTENCY_ISSUES & set(record.get("nik_issues") or ()) for record in (a, b))
