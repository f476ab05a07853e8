"""A rival at home: a guard on a record without a NIK merging into the one strong candidate of its block. Pure.

A record without a NIK, with one strong candidate, merges into it. When the block also holds, under another
NIK, a person of the same birth date who lives with the record and whom the rules sent to review rather
than dismissed (a near name: twins, siblings registered together), the record may be that person's as
well: nothing but the name's spelling chose between the two. The pair rules see one pair at a time; this
sees the block. The candidates then go to a human together (``ambiguous-match``), as several strong
candidates under different NIKs already do (docs/matching.md, "Red-team set").

Checked before ``rival_identity.rivals`` (``demographic_plan``), and not a special case of it: it alone
catches a rival at home beside a strong candidate that has no NIK either (``rivals`` then asks for two rival
NIKs) and beside a strong pair a human confirmed (``rivals`` trusts the confirmation). Where both see the
rival, this one decides (``ambiguous-match``, not ``rival-identity``).
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.domain.households import shares_phone_address_or_home
from shared.domain.pair_rules import REVIEW, Decision


def rivals_at_home(newcomer: Mapping, live: Mapping[str, Mapping], strong: list[tuple[str, Decision]],
                   decisions: Mapping[str, Decision]) -> list[str]:
    """The review candidates of a newcomer without a NIK that carry a NIK none of the ``strong`` candidates
    carries, agree on the birth date and live with the newcomer (``households.shares_phone_address_or_home``)."""
    if newcomer.get("nik_token") or not strong:
        return []
    strong_niks = {live[pid].get("nik_token") for pid, _ in strong}
    return sorted(pid for pid, decision in decisions.items()
                  if decision.outcome == REVIEW and pid in live and live[pid].get("nik_token")
                  and live[pid]["nik_token"] not in strong_niks
                  and (decision.evidence.get("fields") or {}).get("birth_date") == "agree"
                  and shares_phone_address_or_home(newcomer, live[pid]))
