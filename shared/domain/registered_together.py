"""Two people registered together: a guard on the one-digit NIK merge. Pure.

People of one kecamatan, birth date and sex get NIKs that differ only in the serial, handed out in order:
twins (and triplets) registered together on one family card get consecutive serials, so their NIKs
differ in the last digit alone, and they share a phone and an address. A serial typo that lands on the
last digit looks exactly the same. Twins often carry the same or nearly the same name, and a record of
theirs rarely says ``multipleBirth``: nothing in the two records tells the typo from the twin, so the pair
goes to a human. (The red-team set, docs/matching.md "Red-team set", merged twins this way.)

``another_generation``: the household guard of the date-part typo (a junior of another generation).
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.domain.nik_features import typo_digits
from shared.nik import NIK_LENGTH


def registered_together(a: Mapping, b: Mapping, *, household: bool) -> bool:
    """The two records' NIKs differ in their last digit only (a shared substitution mask at the last
    position) and the records share a household (``household``: a phone or address in common)."""
    if not household or a.get("nik_token") == b.get("nik_token"):
        return False
    shared = set(a.get("nik_masks") or ()) & set(b.get("nik_masks") or ())
    return any(typo_digits(mask) == (NIK_LENGTH - 1,) for mask in shared)


YEAR_DIGITS = range(10, 12)


def another_generation(shared_masks) -> bool:
    """NIKs one typo apart (``shared_masks``: the masks the two NIKs share) in a digit of the year: in one
    household, two real NIKs like that are a relative of another generation named after the other (a
    junior, same kecamatan, sex, serial, day and month) whose record took the other's birth date from the
    family card, so the typo that "shows" is no typo. A day or month digit apart with the same year is no
    other generation, and twins share the whole date part (their NIKs differ in the serial)."""
    return any(set(typo_digits(mask)) & set(YEAR_DIGITS) for mask in shared_masks)
