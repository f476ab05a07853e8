"""Rules for one pair of index records (``shared.domain.patient.member_record``). Pure.

``compare_nik_pair`` (two members of one NIK group) and ``compare_demographic_pair`` (two members of one
birth date + sex block, at least one without a NIK) answer a ``Decision``: merge, review or no-match, the
rule that fired, and evidence (scores, which fields agreed, conflicted or were missing; never a raw value).
The newborn and twin rules come first and nothing overrides them. A wrong merge is worse than a missed
one: every rule that is not sure sends the pair to review.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from shared.config import Settings
from shared.names import name_similarity

MERGE, REVIEW, NO_MATCH = "merge", "review", "no-match"


@dataclass(frozen=True)
class Decision:
    outcome: str  # merge | review | no-match
    reason: str  # the rule that fired, e.g. "nik-match", "nik-conflict", "twins"
    evidence: dict = field(default_factory=dict)


def _field_agreement(a: Mapping, b: Mapping, name: str) -> str:
    va, vb = a.get(name), b.get(name)
    if va is None or vb is None:
        return "missing"
    return "agree" if va == vb else "conflict"


def _nik_issues(member: Mapping) -> set[str]:
    return {i for i in member.get("nik_issues") or [] if not i.startswith("invalid-nik")}


def _baby_rules(a: Mapping, b: Mapping, score: float, settings: Settings, confirmed: bool,
                evidence: dict) -> Decision | None:
    """Newborn rules, which no score and no human confirmation can override."""
    a_baby, b_baby = bool(a.get("is_baby")), bool(b.get("is_baby"))
    if not (a_baby or b_baby):
        return None
    birth, gender = _field_agreement(a, b, "birth_date"), _field_agreement(a, b, "gender")
    if a_baby != b_baby:
        # A newborn on the mother's NIK is never the mother. The same child later registered under
        # its own name (same birth date and gender, NIK consistent with both) goes to a human.
        baby, other = (a, b) if a_baby else (b, a)
        if (birth == "agree" and gender != "conflict" and baby.get("kind") != "nik-ibu"
                and not _nik_issues(other)):
            return Decision(REVIEW, "possible-baby-duplicate", evidence)
        return Decision(NO_MATCH, "baby-vs-adult", evidence)
    ma, mb = a.get("multiple_birth"), b.get("multiple_birth")
    if ma is not None and mb is not None and ma != mb:
        return Decision(NO_MATCH, "twins", evidence)
    if birth == "conflict" or gender == "conflict":
        return Decision(NO_MATCH, "different-babies", evidence)
    if confirmed:
        return Decision(MERGE, "human-confirmed", evidence)
    if score >= settings.name_review_threshold:
        return Decision(REVIEW, "possible-baby-duplicate", evidence)
    return Decision(NO_MATCH, "different-babies", evidence)


def _evidence(a: Mapping, b: Mapping, score: float) -> dict:
    fields = {"name": "missing" if not a.get("name") or not b.get("name") else
              ("agree" if score >= 100.0 else "similar" if score > 0 else "conflict")}
    for name in ("birth_date", "gender", "multiple_birth"):
        fields[name] = _field_agreement(a, b, name)
    shared = set(a.get("corroborators") or []) & set(b.get("corroborators") or [])
    return {
        "name_score": round(score, 1),
        "fields": fields,
        "corroborating": sorted({c.split(":", 1)[0] for c in shared}),
        "nik_issues": sorted(set(a.get("nik_issues") or []) | set(b.get("nik_issues") or [])),
        "babies": [bool(a.get("is_baby")), bool(b.get("is_baby"))],
    }


def _score(a: Mapping, b: Mapping) -> float:
    if not a.get("name") or not b.get("name"):
        return 0.0
    return float(name_similarity(a["name"], b["name"]))


def compare_nik_pair(a: Mapping, b: Mapping, settings: Settings, *, confirmed: bool = False,
                     rejected: bool = False) -> Decision:
    """Two members of one NIK group (same NIK token)."""
    score = _score(a, b)
    evidence = _evidence(a, b, score)
    if rejected:
        return Decision(NO_MATCH, "do-not-match", evidence | {"rule": "do-not-match"})
    baby = _baby_rules(a, b, score, settings, confirmed, evidence)
    if baby:
        return Decision(baby.outcome, baby.reason, evidence | {"rule": baby.reason})

    def decide(outcome: str, reason: str) -> Decision:
        return Decision(outcome, reason, evidence | {"rule": reason})

    if confirmed:
        return decide(MERGE, "human-confirmed")
    if not a.get("name") or not b.get("name"):
        return decide(REVIEW, "name-mismatch")
    if score < settings.name_review_threshold:
        return decide(REVIEW, "nik-conflict")
    # The NIK encodes birth date and sex: when it agrees with one record and not the other, one of
    # them carries someone else's (or a mistyped) NIK.
    issues_a, issues_b = _nik_issues(a), _nik_issues(b)
    if issues_a != issues_b:
        return decide(REVIEW, "nik-birthdate-mismatch")
    if evidence["fields"]["birth_date"] == "conflict":
        return decide(REVIEW, "birthdate-conflict")
    if evidence["fields"]["gender"] == "conflict":
        return decide(REVIEW, "gender-conflict")
    corroborated_by_nik = (evidence["fields"]["birth_date"] == "agree" and a.get("kind") == b.get("kind") == "nik"
                           and not issues_a and not issues_b)
    threshold = min(settings.name_match_threshold, settings.nik_name_match_threshold) if corroborated_by_nik \
        else settings.name_match_threshold
    evidence["name_threshold"] = threshold
    if score < threshold:
        return decide(REVIEW, "name-mismatch")
    return decide(MERGE, "nik-match")


def compare_demographic_pair(a: Mapping, b: Mapping, settings: Settings, *, confirmed: bool = False,
                             rejected: bool = False) -> Decision:
    """Two members of one demographic block (same birth date and gender); at least one has no NIK."""
    score = _score(a, b)
    evidence = _evidence(a, b, score)

    def decide(outcome: str, reason: str) -> Decision:
        return Decision(outcome, reason, evidence | {"rule": reason})

    if rejected:
        return decide(NO_MATCH, "do-not-match")
    if a.get("nik_token") and b.get("nik_token") and a["nik_token"] != b["nik_token"]:
        return decide(NO_MATCH, "different-nik")
    baby = _baby_rules(a, b, score, settings, confirmed, evidence)
    if baby:
        return decide(baby.outcome, baby.reason)
    if confirmed:
        return decide(MERGE, "human-confirmed")
    if score < settings.name_review_threshold:
        return decide(NO_MATCH, "different-name")
    corroborated = bool(evidence["corroborating"])
    nik_doubt = bool(_nik_issues(a) or _nik_issues(b))
    if (settings.demographic_auto_merge_enabled and score >= settings.demographic_auto_merge_threshold
            and corroborated and not nik_doubt):
        return decide(MERGE, "demographic-match")
    return decide(REVIEW, "weak-evidence")
