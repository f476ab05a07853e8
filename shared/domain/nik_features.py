"""What a valid NIK says about its holder, for blocking and comparison. Pure.

A NIK encodes the birth date (day + 40 for women), the sex and the district of first registration. When a
record lacks its own birth date or sex, the NIK's are used for blocking and comparison and the index
record lists them in ``derived`` (they are never written back to FHIR). A NIK that disagrees with the
record's own fields stays evidence of a wrong NIK (``shared.nik.nik_consistency``, kept as ``nik_issues``).

``nik_masks``: one keyed short hash per digit position of the NIK with that digit masked, and one per
pair of adjacent different digits with the pair sorted. Two records whose NIKs are one substitution or one
adjacent transposition apart (Damerau distance 1, the two common keyboard errors) share a mask, so "one
typo apart" is decided from the index records alone, without a raw NIK in any document.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import date

from shared.nik import NIK_LENGTH, Nik

MASK_HEX = 8   # 32 bits per mask: a false "one digit apart" needs a collision at the same position


@dataclass(frozen=True)
class NikFeatures:
    birth_date: str            # YYYY-MM-DD
    gender: str                # male | female
    region: str                # PPKKCC: province, regency/city, district of first registration
    masks: tuple[str, ...]     # see module doc


def birth_year(nik: Nik, today: date) -> int:
    """The century is not in the NIK: a two-digit year not after this year is 20yy, else 19yy."""
    return 2000 + nik.birth_yy if 2000 + nik.birth_yy <= today.year else 1900 + nik.birth_yy


def nik_masks(value: str, key: str) -> tuple[str, ...]:
    # 31 keyed digests of one NIK under one key: the key's HMAC state is made once and copied for each
    # (the batch backfill reads every Patient twice; this was two fifths of reading one).
    keyed = hmac.new(key.encode(), digestmod=hashlib.sha256)

    def digest(text: str) -> str:
        mac = keyed.copy()
        mac.update(text.encode())
        return mac.hexdigest()

    masks = []
    for position in range(NIK_LENGTH):
        masked = value[:position] + "*" + value[position + 1:]
        masks.append(f"{position:02d}{digest(f'nikmask|{position}|{masked}')[:MASK_HEX]}")
    # Two adjacent digits typed in the wrong order (the other common keyboard error: Damerau distance 1):
    # the NIK with the pair at ``position`` written in ascending order. Two NIKs one transposition apart
    # share that key; its position is written ``TRANSPOSED + position`` (``typo_digits`` reads both forms).
    for position in range(NIK_LENGTH - 1):
        pair = value[position:position + 2]
        if pair[0] == pair[1]:
            continue  # swapping equal digits changes nothing
        canonical = value[:position] + "".join(sorted(pair)) + value[position + 2:]
        masks.append(f"{TRANSPOSED + position:02d}{digest(f'niktransposed|{position}|{canonical}')[:MASK_HEX]}")
    return tuple(masks)


TRANSPOSED = 20   # position prefix of a transposition key (20-34: the pair at 0-14)


def typo_digits(mask: str) -> tuple[int, ...]:
    """The NIK digit positions a shared mask says differ: one (a substitution) or two (a transposition)."""
    position = int(mask[:2])
    return (position - TRANSPOSED, position - TRANSPOSED + 1) if position >= TRANSPOSED else (position,)


def nik_features(nik: Nik, key: str, today: date | None = None) -> NikFeatures:
    today = today or date.today()
    born = date(birth_year(nik, today), nik.birth_month, 1)
    # parse_nik accepts a day valid in either century (29 February): clamp to the chosen century's month.
    try:
        born = born.replace(day=nik.birth_day)
    except ValueError:
        born = born.replace(day=28)
    return NikFeatures(born.isoformat(), nik.sex, nik.province + nik.regency + nik.district,
                       nik_masks(nik.value, key))


def nik_one_digit_apart(a_masks, b_masks) -> bool:
    """Two different NIKs one digit (or one adjacent transposition) apart share the mask of that position."""
    return bool(set(a_masks or ()) & set(b_masks or ()))
