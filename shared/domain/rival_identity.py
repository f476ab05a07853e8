"""A rival identity: a guard on a demographic merge, and what a later-arriving rival does to one. Pure.

A demographic match (no NIK on both records) says "same name, birth date and sex" and, for a merge, "one
household". Twins registered without ``multipleBirth`` (often one name, one birth date, one phone and
address, NIKs one serial digit apart) make two people of exactly that description, and a record without a
NIK that matches one twin matches the other as well. What tells the merge is ambiguous is not the pair but
the *existence of a rival*: another identity (a record under another NIK, which the rules do not fold into
the pair's NIK) with the newcomer's birth date and sex and a name within review distance of its own.

The check is the same whatever the arrival order when it sees every record of the newcomer's blocks: the
batch backfill passes the whole batch's records (``MatchingService.expect``), so a twin that comes later in
the batch is seen as well. The incremental path sees only what has arrived; when the rival comes after the
merge, ``rival_after_merge`` opens a review item on the merged record (a merge is never undone silently;
a human decides, docs/matching.md "Rival identities").

``household_rival`` runs first and is not a narrower form of this check (``demographic_plan`` says where each
one alone fires).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from shared.config import Settings
from shared.domain.pair_rules import MERGE, compare_demographic_pair
from shared.linkage.model import MatchModel
from shared.names import name_similarity

# Members already on their way into another record (a demographic match or a NIK group's merge).
_SENT = frozenset({"duplicate", "pending", "merged"})


def _name_score(a: Mapping, b: Mapping) -> float:
    return float(name_similarity(a["name"], b["name"])) if a.get("name") and b.get("name") else 0.0


def _same_day_and_sex(a: Mapping, b: Mapping) -> bool:
    if not a.get("birth_date") or a.get("birth_date") != b.get("birth_date"):
        return False
    return not (a.get("gender") and b.get("gender") and a["gender"] != b["gender"])


def near_same_day(newcomer: Mapping, other: Mapping, settings: Settings) -> bool:
    """The other record has the newcomer's birth date and sex and a name within review distance of its own."""
    return _same_day_and_sex(newcomer, other) and _name_score(newcomer, other) >= settings.name_review_threshold


def _identity_records(candidates: Iterable[tuple[str, Mapping]], newcomer: Mapping,
                      settings: Settings) -> dict[str, list[tuple[str, Mapping]]]:
    """The records under a NIK (adults) of the newcomer's birth date and sex and a name within review
    distance of its own, by NIK token."""
    found: dict[str, list[tuple[str, Mapping]]] = {}
    for pid, other in candidates:
        if (other.get("kind") != "nik" or not other.get("nik_token") or other.get("is_baby")
                or not near_same_day(newcomer, other, settings)):
            continue
        found.setdefault(other["nik_token"], []).append((pid, other))
    return found


def _folds_into(records: list[tuple[str, Mapping]], holder: Mapping, settings: Settings,
                model: MatchModel | None) -> bool:
    """One record of another NIK the rules merge with the NIK holder: the same person under a NIK typo."""
    return any(compare_demographic_pair(holder, other, settings, model=model).outcome == MERGE
               for _, other in records)


def rivals(newcomer_id: str, newcomer: Mapping, target_id: str, target: Mapping,
           candidates: Iterable[tuple[str, Mapping]], settings: Settings,
           model: MatchModel | None = None) -> list[str]:
    """The rival identities' record ids of a demographic match ``newcomer`` -> ``target`` (at most one of
    the two carries a NIK). With a NIK on one record: every other NIK of the newcomer's birth date, sex and
    near name that the rules do not fold into the holder's. Without a NIK on either: rivals exist when two
    such NIKs exist that do not fold into each other (one NIK alone may be the pair's own person)."""
    if newcomer.get("nik_token") and target.get("nik_token"):
        return []   # two NIKs: the NIK rules decide (one-digit typos, registered together)
    holder = newcomer if newcomer.get("nik_token") else target if target.get("nik_token") else None
    pair = {newcomer_id, target_id}
    identities = _identity_records(((pid, r) for pid, r in candidates if pid not in pair), newcomer, settings)
    if holder is not None:
        identities.pop(holder["nik_token"], None)
        return sorted(pid for records in identities.values() if not _folds_into(records, holder, settings, model)
                      for pid, _ in records)
    tokens = sorted(identities)
    for i, first in enumerate(tokens):
        for second in tokens[i + 1:]:
            if not any(_folds_into(identities[second], record, settings, model) for _, record in identities[first]):
                return sorted(pid for token in (first, second) for pid, _ in identities[token])
    return []


def rival_after_merge(newcomer_id: str, newcomer: Mapping, members: Mapping[str, Mapping], settings: Settings,
                      model: MatchModel | None = None) -> list[tuple[str, ...]]:
    """A NIK holder arriving in a block where records without a NIK were already sent to another NIK's
    record by a demographic match: each such record the newcomer matches as strongly (a merge by the rules)
    is ambiguous after the fact. Returns (newcomer, sent record, the other NIK's records it matches) per
    such record, for a review item; the merge itself stands until a human decides."""
    nik = newcomer.get("nik_token")
    if not nik or newcomer.get("is_baby") or newcomer.get("kind") != "nik":
        return []
    found = []
    for pid, member in sorted(members.items()):
        if (pid == newcomer_id or member.get("nik_token") or member.get("status") not in _SENT
                or not near_same_day(member, newcomer, settings)
                or compare_demographic_pair(newcomer, member, settings, model=model).outcome != MERGE):
            continue
        holders = [other_id for other_id, other in sorted(members.items())
                   if other.get("nik_token") and other_id not in (pid, newcomer_id)
                   and near_same_day(member, other, settings)
                   and compare_demographic_pair(member, other, settings, model=model).outcome == MERGE]
        if holders and not any(members[h]["nik_token"] == nik for h in holders):
            found.append(tuple(sorted({newcomer_id, pid, *holders})))
    return found
