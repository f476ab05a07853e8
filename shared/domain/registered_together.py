"""Two people registered together: a guard on the one-digit NIK merge. Pure.

People of one kecamatan, birth date and sex get NIKs that differ only in the serial, handed out in order:
twins (and triplets) registered together on one family card get consecutive serials, so their NIKs
differ in the last digit alone, and they share a phone and an address. A serial typo that lands on the
last digit looks exactly the same. Twins often carry the same or nearly the same name, and a record of
theirs rarely says ``multipleBirth``: nothing in the two records tells the typo from the twin, so the pair
goes to a human. (The red-team set, docs/matching.md "Red-team set", merged twins this way.)
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
