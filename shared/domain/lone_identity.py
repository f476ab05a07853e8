"""One identity of a name and a birth date: a demographic match that merges without a shared phone or address
when nothing else could be the person. Pure.

Without one NIK on both records, name + birth date + sex cannot tell a person from a namesake, so a
demographic merge needs a shared phone, address or identifier (``pair_rules.compare_demographic_pair``) and
the rest goes to review. Most of that review is one person (a NIK on one record only, or on neither,
nothing shared). What makes such a pair unsafe is the existence of a second person who fits: a record under
another NIK (``rival_identity.rivals``), or a record without a NIK of that name and day that contradicts
the NIK holder's household (another stated phone, another home): somebody else lives there under that
name. When the pair is the strongest kind the model scores (real birth date exact, sex stated on both and
equal, names exact or, with a NIK on one record, held in one another or highly similar), nothing in the
pair contradicts it, and the records of its birth date + sex block (a batch's records included, arrived or
not) hold no such second person, the model's merge is allowed (``rival-free-match``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from shared.config import Settings
from shared.domain.pair_rules import REVIEW, Decision
from shared.domain.places import homes_conflict, one_address
from shared.domain.rival_identity import near_same_day, rivals

RIVAL_FREE = "rival-free-match"
_NAMES_ONE_SIDE = frozenset({"exact", "subset-or-swap", "high"})


def _levels(decision: Decision) -> dict[str, str]:
    comparisons = ((decision.evidence.get("model") or {}).get("comparisons") or {})
    return {name: entry["level"] for name, entry in comparisons.items()}


def lone_shape(a: Mapping, b: Mapping, decision: Decision, settings: Settings) -> bool:
    """A demographic review pair of the strongest kind, with nothing in it contradicting one person."""
    if decision.outcome != REVIEW or decision.reason != "model-review" or (a.get("nik_token") and b.get("nik_token")):
        return False
    if a.get("is_baby") or b.get("is_baby") or a.get("multiple_birth") is not None or b.get("multiple_birth") is not None:
        return False
    if a.get("nik_issues") or b.get("nik_issues") or a.get("derived") or b.get("derived"):
        return False
    evidence, levels = decision.evidence, _levels(decision)
    names = _NAMES_ONE_SIDE if (a.get("nik_token") or b.get("nik_token")) else {"exact"}
    fields = evidence.get("fields") or {}
    # Near names in one household are twins or siblings (``compare_demographic_pair``): never merged here.
    return (levels.get("name") in names and fields.get("name") == "agree" and levels.get("birth_date") == "exact" and levels.get("sex") == "exact"
            and levels.get("phone") != "else" and fields.get("gender") == "agree"
            and not homes_conflict(a, b) and one_address(a, b)
            and float(evidence["model"].get("identity_weight") or 0.0) >= settings.model_merge_weight)


def _contradicting_namesakes(newcomer: Mapping, holders: list[Mapping], candidates: Iterable[tuple[str, Mapping]],
                             pair: set[str], settings: Settings) -> list[str]:
    """Records without a NIK of the newcomer's day, sex and near name that another phone or another home
    sets apart from a record of the pair: a second person of that name and day."""
    found = []
    for pid, other in candidates:
        if pid in pair or other.get("nik_token") or other.get("is_baby") or not near_same_day(newcomer, other, settings):
            continue
        phones = {c for c in other.get("corroborators") or () if c.startswith("phone:")}
        if any(homes_conflict(other, holder) or (phones and (held := {
                c for c in holder.get("corroborators") or () if c.startswith("phone:")}) and not phones & held)
               for holder in holders):
            found.append(pid)
    return sorted(found)


def second_person(newcomer_id: str, newcomer: Mapping, target_id: str, target: Mapping,
                  candidates: Iterable[tuple[str, Mapping]], settings: Settings, model=None) -> list[str]:
    """The records that make a rival-free merge of ``newcomer`` into ``target`` unsafe: rival identities
    under another NIK, and namesakes without a NIK living apart from the pair."""
    candidates = list(candidates)
    pair = {newcomer_id, target_id}
    return sorted({*rivals(newcomer_id, newcomer, target_id, target, candidates, settings, model),
                   *_contradicting_namesakes(newcomer, [newcomer, target], candidates, pair, settings)})
