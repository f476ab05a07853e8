"""Which candidate blocks a record needs beyond its own birth date + sex block. Pure.

Most pairs that reach comparison are found by the NIK group, the NIK prefix block and the birth date + sex
block. The coarse name + birth year block (first name token, year) grows with the store: its blocks hold
every namesake born that year, so its pairs per patient grow with the district (69 % of all pairs at
1,000,000 patients; ``tools.bench blocking``). Yet a pair of two records whose NIKs agree with their own
birth date and sex is found without it: a pair under one NIK by the NIK group, NIKs one digit apart in
the serial by the prefix block, in the region digits by the birth-date block; and two different NIKs not
one digit apart are never decided (``pair_screen``). What that block finds on its own is a record whose
birth date or sex cannot be trusted to meet its duplicate's: one without a valid NIK of its own, or whose
NIK disagrees with its birth date or sex, or fills them in (``needs_name_year``).

The pair it found between such a record and a NIK holder whose NIK agrees is found instead by the birth
date + sex blocks the first one may belong to (``birth_date_variants``): both sexes when it states none,
and the day and month swapped (a day of 1-12 typed in the month's place). Both are the record's own keys,
O(1) index entries, read the same way by the incremental path and the batch. Measured in
docs/benchmarks.md: what each costs and finds, and the pairs the name + year block found that these do not
(a placeholder 1 January against the true date).
"""

from __future__ import annotations

import re

_FULL_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
SEXES = ("female", "male")


def needs_name_year(kind: str, nik_issues: tuple[str, ...], derived: tuple[str, ...]) -> bool:
    """Whether a record joins the name + birth year block: without a valid own NIK (kind ``none`` or
    ``nik-ibu``), with a NIK that disagrees with its fields (or a cut-off serial), or with a birth date or
    sex taken from the NIK because the record has none."""
    return kind != "nik" or bool(nik_issues) or bool(derived)


def birth_date_variants(kind: str, is_baby: bool, birth_date: str | None, gender: str | None) -> list[tuple[str, str]]:
    """The (birth date, sex) pairs of the birth-date blocks a record joins besides its own: for an adult or
    child record without a valid own NIK and with a full birth date, both sexes when it states none, and
    the date with day and month swapped when the day could be a month. Newborns are left out: their
    birth-date blocks are the largest of a store, and a newborn's later records meet it by its mother's
    NIK, phone and the blocks of its own birth date."""
    match = _FULL_DATE.match(birth_date or "")
    if kind == "nik" or is_baby or not match:
        return []
    year, month, day = match.groups()
    dates = [birth_date]
    if int(day) <= 12 and day != month:
        dates.append(f"{year}-{day}-{month}")
    sexes = (gender,) if gender else SEXES
    own = (birth_date, gender)
    return [(date, sex) for date in dates for sex in sexes if (date, sex) != own]
