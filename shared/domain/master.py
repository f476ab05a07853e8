"""Master (golden record) selection among the members of one merge, pure and deterministic.

Members are the index records of ``shared.domain.patient.member_record`` (plain dicts). The rule:

1. An active member already carrying the self-referencing golden tag wins: once a master, always the
   master, so a second run never moves references back and forth.
2. Otherwise an active member before an inactive one, then the highest ``score`` (completeness: name,
   birthDate, gender, telecom, address, a NIK consistent with birthDate/gender — one point each, see
   ``patient.completeness``),
3. then the preferred source (``settings.source_priority``, earlier is better, unknown last),
4. then the most recently updated (``meta.lastUpdated``),
5. then the smallest patient id, so equal records always give the same answer in any order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence


def _source_rank(source: str | None, source_priority: Sequence[str]) -> int:
    if source and source in source_priority:
        return list(source_priority).index(source)
    return len(source_priority)


def master_sort_key(patient_id: str, member: Mapping, source_priority: Sequence[str]) -> tuple:
    """Smaller sorts first = better master."""
    golden = bool(member.get("golden")) and member.get("active", True) is not False
    # lastUpdated is ISO-8601 (same zone from one server), so the string order is the time order;
    # negating is not possible for strings, hence the two-step sort in select_master.
    return (
        0 if golden else 1,
        0 if member.get("active", True) is not False else 1,  # an inactive record is a poor master
        -float(member.get("score") or 0.0),
        _source_rank(member.get("source"), source_priority),
    )


def select_master(members: Mapping[str, Mapping], candidate_ids: Iterable[str],
                  source_priority: Sequence[str]) -> str:
    """The id of the master among ``candidate_ids`` (each must be a key of ``members``;
    a candidate without a record ranks last but can still win alone)."""
    ids = sorted(set(candidate_ids))
    if not ids:
        raise ValueError("no candidates to select a master from")
    # Ascending id first, then descending recency (stable sort keeps id order among equals),
    # then the main key: the result is deterministic whatever the input order.
    ids.sort(key=lambda pid: str((members.get(pid) or {}).get("last_updated") or ""), reverse=True)
    ids.sort(key=lambda pid: master_sort_key(pid, members.get(pid) or {}, source_priority))
    return ids[0]


def golden_members(members: Mapping[str, Mapping], candidate_ids: Iterable[str]) -> list[str]:
    return sorted(pid for pid in candidate_ids
                  if (members.get(pid) or {}).get("golden") and (members.get(pid) or {}).get("active", True))
