"""Which candidate pairs the review band keeps. Pure.

A review item costs a human's time; it should exist only where the evidence is genuinely ambiguous. A
candidate pair whose agreement is the kind that many different people of one district share is "no match",
whatever its evidence weight: the model's levels cannot see the patterns below, each a pattern of real
registry data (not of one generator), and on the calibration seed each held several non-matches per true
pair (docs/matching.md, "Review band").

- ``placeholder-date``: the two records agree on a birth date only because it is 1 January, what registries
  write when the birth date is unknown, and nothing else ties them (no NIK on both, no shared phone,
  address or identifier): a name and a year are shared by namesakes.
- ``placeholder-nik-neighbour``: NIKs one digit apart whose date part is 1 January: every person of one
  kecamatan and sex given that placeholder date holds a NIK differing only in the serial, so a neighbouring
  NIK there is a namesake's, not a typo, unless a phone, address or identifier is shared.
- ``other-phones``: both records state a phone, the phones differ, and no address or identifier is shared:
  two households (a person who changed numbers and has no NIK on both records is the price).

Applies to pairs without one NIK on both (demographic candidate blocks); a NIK group's pairs keep their rules.
"""

from __future__ import annotations

from collections.abc import Mapping


def _levels(model_evidence: Mapping) -> dict[str, str]:
    return {name: entry["level"] for name, entry in (model_evidence.get("comparisons") or {}).items()}


def weak_evidence(model_evidence: Mapping, corroborating: list[str] | tuple[str, ...]) -> str | None:
    """The pattern that makes a demographic review candidate "no match", or None. ``model_evidence``: the
    ``Score.evidence()`` of the pair; ``corroborating``: the kinds of keyed tokens both records share
    (``phone``, ``addr``, ``id``)."""
    if corroborating:
        return None
    levels = _levels(model_evidence)
    birth, nik = levels.get("birth_date"), levels.get("nik")
    if birth == "exact-placeholder" and nik in ("null", "else"):
        return "placeholder-date"
    if birth == "exact-placeholder" and nik == "one-digit":
        return "placeholder-nik-neighbour"
    if levels.get("phone") == "else" and nik != "exact":
        return "other-phones"
    return None
