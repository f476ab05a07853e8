"""Which members of a candidate block can ever be decided with one another. Pure.

``compare_demographic_pair`` answers *no-match* for most pairs of a block before any score: two
different NIKs that are not one digit apart (``different-nik``, unless the names are the same:
``two_niks``), or two adults whose names are below
the review threshold (``different-name``); a pair under one NIK is skipped (its NIK group decides it).
Such a pair changes nothing in the block's plan: neither record is a candidate of the other, neither
opens a request or a review item there. A member all of whose pairs in a block are of that kind is
*passive* in the block: what the block decides for it, and for the others, does not depend on it being
there (``deciding_members``).

The batch backfill (``services/batch_parts``) cuts a store into independent parts along groups; a block
joins only its deciding members, so a common birth date or first name no longer chains a fifth of a
district into one part. ``ScreenKey`` is what the screen needs of a record (no raw NIK: keyed tokens and
masks, the normalised name), built from the same ``PatientFacts`` as its index record.

What the screen assumes of a block, and the caller checks: it was never stored (no human confirmed or
rejected a pair in it), it holds at most ``block_member_cap`` records (the cap never turns one away, so
who arrives first does not matter), none of its records is a merge's own write (golden or
replaced-by) or inactive, and no NIK group's rules read its members (a NIK prefix block, the phone block
of a NIK holder whose group holds a record without its own birth date: ``MatchingService._nik_neighbours``,
``pair_rules._relative_namesake``; there a passive member still counts).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from itertools import combinations
from typing import NamedTuple

from shared.config import Settings
from shared.domain.nik_features import MASK_HEX
from shared.domain.patient import PatientFacts
from shared.names import name_similarity

_MASK_BYTES = (2 + MASK_HEX) // 2    # a mask is its two-digit position and MASK_HEX hex digits


class ScreenKey(NamedTuple):
    nik_token: str | None
    masks: bytes         # the NIK's one-digit masks, packed (a record of kind "nik" only: the rule's condition)
    name: str
    is_baby: bool
    plain: bool          # active, neither golden nor replaced-by: decided by the block's rules


def screen_key(facts: PatientFacts) -> ScreenKey:
    masks = bytes.fromhex("".join(facts.nik_masks)) if facts.kind == "nik" else b""
    return ScreenKey(facts.nik_token, masks, facts.name, facts.is_baby,
                     facts.active and not facts.golden and not facts.replaced_by)


def _mask_set(masks: bytes) -> set[bytes]:
    return {masks[i:i + _MASK_BYTES] for i in range(0, len(masks), _MASK_BYTES)}


def never_decided(a: ScreenKey, b: ScreenKey, settings: Settings, masks: tuple[set, set] | None = None) -> bool:
    """``compare_demographic_pair`` of two records in a block without human decisions answers no-match
    whatever else they hold, or the block skips the pair (one NIK). ``masks``: the two records' mask sets,
    when the caller has them already."""
    if a.nik_token and a.nik_token == b.nik_token:
        return True
    if a.nik_token and b.nik_token and not (masks[0] & masks[1] if masks else _mask_set(a.masks) & _mask_set(b.masks)):
        # "different-nik": checked before any other rule but the twins' (no-match too), unless the two
        # records share their name (``two_niks``: everything else may agree too, a person looks).
        return not a.name or a.name != b.name
    if a.is_baby or b.is_baby:
        return False    # the newborn rules come before the name threshold
    return not a.name or not b.name or _similarity(a.name, b.name) < settings.name_review_threshold


@lru_cache(maxsize=1 << 18)
def _similarity(a: str, b: str) -> float:
    # The same common names meet in many blocks of a store (the batch screens every block of it).
    return name_similarity(a, b)


def deciding_members(keys: Sequence[ScreenKey], settings: Settings) -> set[int]:
    """The positions of the block's members that have at least one pair ``never_decided`` does not rule
    out. Pairs of two NIK holders meet only through a shared mask or one name (every other such pair is
    ruled out), so only those, and the pairs of a record without a NIK, are looked at. Which members
    decide does not depend on the order the pairs are looked at in (a pair is skipped only when both
    already decide)."""
    deciding: set[int] = set()
    masks = [_mask_set(key.masks) for key in keys]
    without_nik = [i for i, key in enumerate(keys) if not key.nik_token]
    by_mask: dict[bytes, list[int]] = {}
    for i, found in enumerate(masks):
        for mask in found:
            by_mask.setdefault(mask, []).append(i)
    by_name: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        if key.nik_token and key.name:
            by_name.setdefault(key.name, []).append(i)
    pairs = {(i, j) for sharing in (*by_mask.values(), *by_name.values()) if len(sharing) > 1
             for i, j in combinations(sharing, 2)}
    pairs |= {(min(i, j), max(i, j)) for i in without_nik for j in range(len(keys)) if j != i}
    for i, j in pairs:
        if (i not in deciding or j not in deciding) and not never_decided(keys[i], keys[j], settings,
                                                                          (masks[i], masks[j])):
            deciding |= {i, j}
    return deciding
