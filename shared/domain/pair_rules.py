"""Rules for one pair of index records (``shared.domain.patient.member_record``). Pure.

``compare_nik_pair`` (two members of one NIK group) and ``compare_demographic_pair`` (two members of one
birth date + sex block, at least one without a NIK) answer a ``Decision``: merge, review or no-match, the
rule that fired, and evidence (scores, which fields agreed, conflicted or were missing; never a raw value).
The newborn and twin rules come first and nothing overrides them. A wrong merge is worse than a missed
one: every rule that is not sure sends the pair to review.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from shared.config import Settings
from shared.domain.foreign_nik import nik_of_neither
from shared.domain.households import (
    shares_contact_or_one_address,
    shares_phone_address_or_home,
    shares_phone_or_address,
)
from shared.domain.identity_evidence import (
    date_typo_under_nik,
    is_placeholder_date,
    nik_issues,
    states_birth_date,
)
from shared.domain.nik_features import nik_one_digit_apart, typo_digits
from shared.domain.placeholder_birth_date import placeholder_as_unknown
from shared.domain.places import homes_conflict, one_address
from shared.domain.registered_together import another_generation, registered_together
from shared.domain.review_band import weak_evidence
from shared.domain.serial_typo import first_serial_digits_typo, namesakes_of_two_kecamatans
from shared.domain.two_niks import one_person_two_niks
from shared.linkage.model import MatchModel, default_model
from shared.names import name_similarity

MERGE, REVIEW, NO_MATCH = "merge", "review", "no-match"


@dataclass(frozen=True)
class Decision:
    outcome: str  # merge | review | no-match
    reason: str  # the rule that fired, e.g. "nik-match", "nik-conflict", "twins"
    evidence: dict = field(default_factory=dict)


def _field_agreement(a: Mapping, b: Mapping, name: str) -> str:
    # A field filled from the record's own NIK is no evidence beside that NIK: the rules see it as missing.
    va = None if name in (a.get("derived") or ()) else a.get(name)
    vb = None if name in (b.get("derived") or ()) else b.get(name)
    if va is None or vb is None:
        return "missing"
    return "agree" if va == vb else "conflict"


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
                and not nik_issues(other)):
            return Decision(REVIEW, "possible-baby-duplicate", evidence)
        return Decision(NO_MATCH, "baby-vs-adult", evidence)
    if birth == "conflict" or gender == "conflict":
        return Decision(NO_MATCH, "different-babies", evidence)
    if confirmed:
        return Decision(MERGE, "human-confirmed", evidence)
    if score >= settings.name_review_threshold:
        return Decision(REVIEW, "possible-baby-duplicate", evidence)
    return Decision(NO_MATCH, "different-babies", evidence)


def is_twin_pair(a: Mapping, b: Mapping) -> bool:
    """Two different ``multipleBirth`` orders are two people, at any age."""
    ma, mb = a.get("multiple_birth"), b.get("multiple_birth")
    return ma is not None and mb is not None and ma != mb


def _model_decision(a: Mapping, b: Mapping, settings: Settings, model: MatchModel | None, evidence: dict,
                    *, merge_allowed: bool = True) -> tuple[str, str, dict]:
    """The trained model over a pair no deterministic rule decided: merge at or above the calibrated
    threshold on identity evidence (household evidence, a shared phone, never counts towards a merge),
    review in the band below, no match under it."""
    score = (model or default_model()).score("a", a, "b", b)
    evidence = evidence | {"model": score.evidence()}
    if merge_allowed and score.band(settings.model_merge_weight, settings.model_review_weight) == MERGE:
        return MERGE, "model-match", evidence
    if score.evidence_weight >= settings.model_review_weight:
        return REVIEW, "model-review", evidence
    return NO_MATCH, "model-no-match", evidence


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


# NIK-group rules that only say "not sure": the model may still merge the pair (same NIK, names close).
_NAMES_AGREEING = frozenset({"exact", "subset-or-swap", "high"})
_MODEL_DECIDES = frozenset({"name-mismatch", "birthdate-conflict", "gender-conflict", "nik-birthdate-mismatch"})


def compare_nik_pair(a: Mapping, b: Mapping, settings: Settings, *, confirmed: bool = False,
                     rejected: bool = False, model: MatchModel | None = None,
                     neighbours: Sequence[Mapping] = ()) -> Decision:
    """Two members of one NIK group (same NIK token). ``neighbours``: the records under other NIKs of the
    same first 12 digits (``nik_neighbours``)."""
    # A placeholder date (1 January) is an unknown date, not one the NIK contradicts.
    a, b = placeholder_as_unknown(a, b), placeholder_as_unknown(b, a)
    decision = _compare_nik_pair(a, b, settings, confirmed=confirmed, rejected=rejected, neighbours=neighbours)
    if decision.outcome == MERGE and decision.reason == "nik-match" and nik_of_neither(a, b):
        return Decision(REVIEW, "nik-of-neither", decision.evidence | {"rule": "nik-of-neither"})
    if decision.outcome != REVIEW or decision.reason not in _MODEL_DECIDES or not a.get("name") or not b.get("name"):
        return decision
    outcome, reason, evidence = _model_decision(a, b, settings, model, decision.evidence)
    # Two people on one NIK (a typo that hit another person's NIK) often have close names (relatives,
    # common names): under one NIK the model merges only names that agree, hold one another, or are
    # highly similar, never a "medium" name.
    if outcome == MERGE and evidence["model"]["comparisons"]["name"]["level"] not in _NAMES_AGREEING:
        outcome = REVIEW
    # A single given name ("Dewi", "Nurul") held in the other record's name is shared by many people of
    # one birth date and district: the very people whose NIKs a serial typo turns into this one. It
    # merges when the records also share a phone, address or identifier (the NIK's owner lives there).
    if (outcome == MERGE and _single_token_subset(a["name"], b["name"])
            and not shares_contact_or_one_address(a, b, evidence)):
        outcome = REVIEW
    if outcome == MERGE and _collision_prone(a, b, neighbours, evidence, settings):
        outcome = REVIEW
    if outcome == MERGE and nik_of_neither(a, b):
        outcome = REVIEW
    # The NIK agrees with one record and not the other: a date typo in the NIK (the names then agree), or
    # a relative's NIK typed onto this record (they live together and share a family name: a name held in
    # the other, "Piliang" / "Yulnida Piliang"). Only agreeing names let the model merge it.
    if (outcome == MERGE and decision.reason == "nik-birthdate-mismatch"
            and evidence["model"]["comparisons"]["name"]["level"] not in ("exact", "high")):
        outcome = REVIEW
    if (outcome != MERGE and decision.reason == "nik-birthdate-mismatch" and date_typo_under_nik(a, b, evidence)
            and not _collision_prone(a, b, neighbours, evidence, settings)):
        return Decision(MERGE, "nik-date-typo", evidence | {"rule": "nik-date-typo"})
    if outcome != MERGE:
        # The rule's reason stays (a human sees why the rules hesitated); the model's weights are evidence.
        return Decision(REVIEW, decision.reason, evidence)
    return Decision(MERGE, reason, evidence | {"rule": reason})


def _single_token_subset(name_a: str, name_b: str) -> bool:
    tokens_a, tokens_b = set(name_a.split()), set(name_b.split())
    return tokens_a != tokens_b and min(len(tokens_a), len(tokens_b)) == 1 and (
        tokens_a <= tokens_b or tokens_b <= tokens_a)


def nik_neighbours(block: Mapping[str, Mapping], nik_token: str | None, *,
                   household: bool = False) -> tuple[dict, ...]:
    """The live adults of the NIK prefix block (``shared.domain.patient.nik_prefix_block``: every NIK of the
    same kecamatan, birth date and sex) under another NIK than ``nik_token``: whose serial typo can give it.
    ``household``: the block is the record's phone block instead (its household's members under other
    NIKs, ``_relative_namesake``); each record is marked so."""
    return tuple(dict(other) | ({"household": True} if household else {}) for _, other in sorted(block.items())
                 if other.get("kind") == "nik" and other.get("nik_token") not in (None, nik_token)
                 and not other.get("is_baby") and other.get("name")
                 and other.get("status") not in ("merged", "deleted"))


def _namesake_at_home(record: Mapping, neighbours: Sequence[Mapping], settings: Settings) -> bool:
    """A neighbour under another NIK, with a name within review distance, living with the record: the
    record may be that person's, its NIK a serial typo of theirs."""
    return bool(record.get("name")) and any(
        not other.get("household") and shares_phone_address_or_home(record, other)
        and _score(record, other) >= settings.name_review_threshold for other in neighbours)


def _collision_prone(a: Mapping, b: Mapping, neighbours: Sequence[Mapping], evidence: dict,
                     settings: Settings) -> str | None:
    """Why one NIK on two records may be a serial typo that hit another person, with nothing shared to say
    otherwise: the NIK's first 12 digits encode the kecamatan, birth date and sex, so a typo lands on a
    person who agrees on all three, and a common name agrees too. Two stated homes (``homes_conflict``)
    then tell two people apart (a person who moved goes to review, not lost); so does a namesake under a
    NIK one typo away living with one of the records, when the pair shows no home in common. A shared
    phone, address or identifier settles it."""
    if _relative_namesake(a, b, neighbours, settings):
        return "nik-relative-namesake"
    if evidence["corroborating"]:
        return None
    if "serial-zero" in nik_issues(a) | nik_issues(b):
        return "nik-serial-lost"
    if homes_conflict(a, b):
        return "nik-home-conflict"
    if neighbours and not one_address(a, b) and (_namesake_at_home(a, neighbours, settings)
                                               or _namesake_at_home(b, neighbours, settings)):
        return "nik-namesake-nearby"
    return None


def _relative_namesake(a: Mapping, b: Mapping, neighbours: Sequence[Mapping], settings: Settings) -> bool:
    """A record that states no birth date of its own cannot show that its NIK is a relative's (families
    register together, from one family card): the NIK's consistency check has nothing to check. When a
    household member under another NIK (``nik_neighbours(..., household=True)``) bears a name the NIK's name-match
    threshold would accept, the record may be that member's (a son named after his father): review, even
    with the household shared, which relatives always do."""
    for record in (a, b):
        if states_birth_date(record) or not record.get("name"):
            continue
        if any(other.get("household") and shares_phone_address_or_home(record, other)
               and _score(record, other) >= settings.nik_name_match_threshold for other in neighbours):
            return True
    return False


def _compare_nik_pair(a: Mapping, b: Mapping, settings: Settings, *, confirmed: bool,
                      rejected: bool, neighbours: Sequence[Mapping] = ()) -> Decision:
    score = _score(a, b)
    evidence = _evidence(a, b, score)
    if rejected:
        return Decision(NO_MATCH, "do-not-match", evidence | {"rule": "do-not-match"})
    if is_twin_pair(a, b):
        return Decision(NO_MATCH, "twins", evidence | {"rule": "twins"})
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
    issues_a, issues_b = nik_issues(a), nik_issues(b)
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
    if collision := _collision_prone(a, b, neighbours, evidence, settings):
        return decide(REVIEW, collision)
    if is_placeholder_date(a.get("birth_date")) and not shares_contact_or_one_address(a, b, evidence):
        # A NIK of a placeholder date shares its first 12 digits with every namesake of the district given
        # that date: a serial typo lands on one of them. Without a shared phone, address or identifier the
        # NIK does not tell the two apart.
        return decide(REVIEW, "nik-placeholder-date")
    return decide(MERGE, "nik-match")


def _one_digit_merge_allowed(a: Mapping, b: Mapping, score: float, settings: Settings, evidence: dict) -> bool:
    """NIKs one digit apart are one person's typo only when the typo shows: the digit is in the date part
    and makes exactly one record's NIK disagree with its own birth date or sex, while everything else
    agrees strongly and no household links them. Two people of neighbouring districts, or of one
    district, birth date and sex (twins, namesakes: consecutive serials), have valid NIKs one digit apart
    that each agree with their own record: those go to review. In a household a year digit stays in
    review (``registered_together.another_generation``)."""
    fields = evidence["fields"]
    shared = set(a.get("nik_masks") or ()) & set(b.get("nik_masks") or ())
    in_date_part = any(all(6 <= digit <= 11 for digit in typo_digits(mask)) for mask in shared)
    typo_shows = bool(nik_issues(a)) != bool(nik_issues(b))
    agree = score >= settings.name_match_threshold and fields["birth_date"] == "agree" and fields["gender"] == "agree"
    if in_date_part and typo_shows and agree and not (shares_phone_or_address(a, b) and another_generation(shared)):
        return True
    # A serial typo: the same name (not a near one: twins), the same real birth date (not the 1 January
    # placeholder namesakes share) and one household (namesakes of adjacent serials live apart); not two
    # namesakes of neighbouring kecamatans (``serial_typo.namesakes_of_two_kecamatans``).
    same_person_fields = (fields["name"] == "agree" and agree and not is_placeholder_date(a.get("birth_date"))
                          and not nik_issues(a) and not nik_issues(b))
    if same_person_fields and shares_phone_or_address(a, b) and not namesakes_of_two_kecamatans(a, b, shared):
        return True
    # Or a typo in the serial's first three digits (``serial_typo``).
    return first_serial_digits_typo(a, b, score, fields, settings)


def compare_demographic_pair(a: Mapping, b: Mapping, settings: Settings, *, confirmed: bool = False,
                             rejected: bool = False, model: MatchModel | None = None) -> Decision:
    """Two members of one candidate block (birth date + sex, name key + birth year, NIK prefix, phone)
    with different NIK tokens or at least one without a NIK."""
    score = _score(a, b)
    evidence = _evidence(a, b, score)

    def decide(outcome: str, reason: str) -> Decision:
        return Decision(outcome, reason, evidence | {"rule": reason})

    if rejected:
        return decide(NO_MATCH, "do-not-match")
    if is_twin_pair(a, b):
        return decide(NO_MATCH, "twins")
    one_digit = False
    if a.get("nik_token") and b.get("nik_token") and a["nik_token"] != b["nik_token"]:
        one_digit = a.get("kind") == b.get("kind") == "nik" and nik_one_digit_apart(a.get("nik_masks"),
                                                                                    b.get("nik_masks"))
        if not one_digit:
            if not one_person_two_niks(a, b, evidence):
                return decide(NO_MATCH, "different-nik")
            return decide(MERGE, "human-confirmed") if confirmed else decide(REVIEW, "two-niks-review")
    baby = _baby_rules(a, b, score, settings, confirmed, evidence)
    if baby:
        return decide(baby.outcome, baby.reason)
    if confirmed:
        return decide(MERGE, "human-confirmed")
    if score < settings.name_review_threshold:
        return decide(NO_MATCH, "different-name")
    nik_doubt = bool(nik_issues(a) or nik_issues(b))
    # Without one NIK on both records, name, birth date and sex cannot tell a person from a namesake
    # (common names, placeholder dates): a merge also needs a shared phone, address or identifier. It
    # cannot make a merge on its own (the model's identity weight leaves the phone out): it only rules
    # out the namesake of another household.
    corroborated = bool(evidence["corroborating"])
    # Names one or two letters apart, one birth date, one household: the pattern of twins (and of a typo,
    # which the data cannot tell from it). A human decides.
    # Siblings born on other days too: a birth date written with day and month swapped, or one digit off,
    # is what the model forgives in a duplicate, and it is the sibling's own date.
    household = shares_phone_or_address(a, b)
    siblings = evidence["fields"]["name"] != "agree" and household
    # A record that says it is one of a multiple birth has a twin of the same birth date, household and a
    # similar name; a record of theirs that does not say which one cannot be told apart without one NIK.
    twin_unknown = (a.get("multiple_birth") is None) != (b.get("multiple_birth") is None)
    merge_allowed = settings.demographic_auto_merge_enabled and not siblings and not twin_unknown and (
        (_one_digit_merge_allowed(a, b, score, settings, evidence)
         and not registered_together(a, b, household=household))
        if one_digit else corroborated and not nik_doubt)
    outcome, reason, model_evidence = _model_decision(a, b, settings, model, evidence, merge_allowed=merge_allowed)
    if outcome == REVIEW and (weak := weak_evidence(model_evidence["model"], evidence["corroborating"])):
        return Decision(NO_MATCH, "weak-evidence", model_evidence | {"rule": "weak-evidence", "weak": weak})
    if one_digit:
        reason = {MERGE: "nik-one-digit-match", REVIEW: "nik-one-digit-review"}.get(outcome, reason)
    return Decision(outcome, reason, model_evidence | {"rule": reason})
