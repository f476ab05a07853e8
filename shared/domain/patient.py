"""Facts matching needs, extracted from a FHIR Patient. Pure.

``patient_facts`` reads a Patient resource once; ``member_record`` turns the facts into the index
record kept in Firestore (see docs/DESIGN.md). The record holds the normalised name, birth date and
gender (matching cannot work without them) and *keyed tokens* of everything else it compares
(NIK, phone, address, other identifiers) — never a raw NIK, phone number or address.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shared.config import Settings
from shared.domain.nik_features import nik_features
from shared.domain.places import home_forms, place_words, typo_variants
from shared.names import normalise_name, patient_name
from shared.nik import NikError, nik_consistency, nik_token, parse_nik

_SOURCE = re.compile(r"^urn:source:([A-Za-z0-9_.\-]+)")
_NON_DIGIT = re.compile(r"\D+")
_NON_WORD = re.compile(r"[^0-9a-z]+")


@dataclass(frozen=True)
class PatientFacts:
    patient_id: str
    version: str | None
    last_updated: str | None
    active: bool
    kind: str  # "nik" | "nik-ibu" (newborn on the mother's NIK) | "none"
    nik_token: str | None  # token of the NIK (or of the mother's NIK for kind "nik-ibu")
    nik_issues: tuple[str, ...]  # nik_consistency results, or ("invalid-nik:<reason>",)
    name: str  # normalised text, "" when none
    is_baby: bool
    birth_date: str | None
    gender: str | None
    multiple_birth: int | None
    corroborators: tuple[str, ...]  # keyed tokens "phone:..", "addr:..", "id:.."
    golden: bool  # carries the self-referencing golden tag
    replaced_by: str | None  # master id from a replaced-by link (a merged duplicate)
    source: str | None
    score: float  # completeness, see ``completeness``
    has_name: bool = field(default=False)
    # Filled from a valid own NIK (``shared.domain.nik_features``) when the record lacks them; never written
    # back to FHIR. ``derived`` names the fields of ``birth_date``/``gender`` that came from the NIK.
    derived: tuple[str, ...] = ()
    region: str | None = None            # NIK region code (province+regency+district), None without a NIK
    nik_masks: tuple[str, ...] = ()      # keyed masks of the NIK, one per digit (one-digit typos)
    nik_prefix_token: str | None = None  # keyed token of the NIK's first 12 digits (a serial typo's block)
    places: tuple[str, ...] = ()         # keyed tokens of the place names of the address lines (``place_words``)
    home: str | None = None              # keyed token of the first (most specific) of them
    # keyed tokens of the home's one-typo variants (``places.typo_variants``): one home despite a typo
    home_variants: tuple[str, ...] = ()


def _dict(value: object) -> dict:
    """A JSON object field, or {} when it is absent or not an object (resources are read defensively)."""
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list:
    """A JSON array field, or [] when it is absent or not an array."""
    return value if isinstance(value, list) else []


def _keyed(kind: str, value: str, key: str) -> str:
    return kind + ":" + hmac.new(key.encode(), f"{kind}|{value}".encode(), hashlib.sha256).hexdigest()[:24]


def blocking_token(birth_date: str, gender: str, settings: Settings) -> str:
    """Demographic block key: keyed HMAC of birth date + gender (no birth date in a document id)."""
    key = settings.nik_hash_key.get_secret_value()
    return hmac.new(key.encode(), f"block|{birth_date}|{gender}".encode(), hashlib.sha256).hexdigest()[:32]


def _block_token(key: str, value: str) -> str:
    return hmac.new(key.encode(), f"block|{value}".encode(), hashlib.sha256).hexdigest()[:32]


def birth_date_block(facts: PatientFacts, settings: Settings) -> str | None:
    """The block of the birth date and sex (NIK-derived when missing), or None without both."""
    if not (facts.birth_date and facts.gender):
        return None
    return blocking_token(facts.birth_date, facts.gender, settings)


def nik_prefix_block(facts: PatientFacts, settings: Settings) -> str | None:
    """The block of the NIK's first 12 digits (kecamatan, birth date, sex): every NIK a serial typo of
    this one can be, and the namesakes born the same day in the same kecamatan."""
    if not facts.nik_prefix_token:
        return None
    return _block_token(settings.nik_hash_key.get_secret_value(), facts.nik_prefix_token)


def candidate_blocks(facts: PatientFacts, settings: Settings) -> list[str]:
    """The candidate blocks a record joins besides its NIK group, in the order a pair is decided (the
    first block two records share decides them): birth date + sex (NIK-derived when missing), the NIK's
    first 12 digits (a typo in the serial), name key + birth year (first name token: a wrong birth day or
    month), the first phone (a NIK-less record of a household's member). Keyed tokens only."""
    return list(dict.fromkeys(block for _, block in labelled_blocks(facts, settings)))


def labelled_blocks(facts: PatientFacts, settings: Settings) -> list[tuple[str, str]]:
    """``candidate_blocks`` with the kind of each (``birth-date``, ``nik-prefix``, ``name-year``,
    ``phone``), for measuring what each kind costs and finds (``tools.bench blocking``)."""
    key = settings.nik_hash_key.get_secret_value()
    blocks = []
    if day_block := birth_date_block(facts, settings):
        blocks.append(("birth-date", day_block))
    if prefix_block := nik_prefix_block(facts, settings):
        blocks.append(("nik-prefix", prefix_block))
    if facts.name and facts.birth_date and not facts.is_baby:
        blocks.append(("name-year", _block_token(key, f"name-year|{facts.name.split()[0]}|{facts.birth_date[:4]}")))
    if phone := phone_block(facts, settings):
        blocks.append(("phone", phone))
    return blocks


def phone_block(facts: PatientFacts, settings: Settings) -> str | None:
    """The candidate block of the record's first phone (its household), or None without a phone."""
    phones = [c for c in facts.corroborators if c.startswith("phone:")]
    return _block_token(settings.nik_hash_key.get_secret_value(), phones[0]) if phones else None


def normalise_phone(raw: str) -> str | None:
    digits = _NON_DIGIT.sub("", raw or "")
    if digits.startswith("62"):
        digits = "0" + digits[2:]
    elif digits and not digits.startswith("0"):
        digits = "0" + digits
    return digits if len(digits) >= 8 else None


def normalise_address(raw: str) -> str | None:
    text = _NON_WORD.sub(" ", (raw or "").lower()).split()
    # Common Indonesian abbreviations, so "Jl. Merdeka No. 5" equals "jalan merdeka nomor 5".
    canonical = {"jl": "jalan", "jln": "jalan", "no": "nomor", "gg": "gang", "rt": "rt", "rw": "rw"}
    words = [canonical.get(w, w) for w in text]
    return " ".join(words) if len(words) >= 2 else None


def _gender(resource: dict) -> str | None:
    gender = resource.get("gender")
    return gender if gender in ("male", "female") else None


def _birth_date(resource: dict) -> str | None:
    value = resource.get("birthDate")
    return value.strip() if isinstance(value, str) and value.strip() else None


def _multiple_birth(resource: dict) -> int | None:
    value = resource.get("multipleBirthInteger")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _identifier_values(resource: dict, system: str) -> list[str]:
    return [i["value"] for i in _list(resource.get("identifier"))
            if isinstance(i, dict) and i.get("system") == system and isinstance(i.get("value"), str)]


def _source(resource: dict) -> str | None:
    source = _dict(resource.get("meta")).get("source")
    match = _SOURCE.match(source) if isinstance(source, str) else None
    return match.group(1).lower() if match else None


def _reference_id(reference: str | None) -> str | None:
    if not isinstance(reference, str) or "Patient/" not in reference:
        return None
    return reference.rsplit("Patient/", 1)[1].split("/")[0] or None


def completeness(*, has_name: bool, birth_date: str | None, gender: str | None, has_telecom: bool,
                 has_address: bool, nik_consistent: bool) -> float:
    """One point per field present; a NIK that agrees with birthDate/gender counts as one more."""
    return float(sum((has_name, bool(birth_date), bool(gender), has_telecom, has_address, nik_consistent)))


def patient_facts(resource: dict, settings: Settings) -> PatientFacts:
    """Never raises on a resource's content: a field of the wrong JSON type counts as absent."""
    key = settings.nik_hash_key.get_secret_value()
    resource = _dict(resource)
    patient_id = resource.get("id") if isinstance(resource.get("id"), str) else ""
    meta = _dict(resource.get("meta"))
    birth_date, gender = _birth_date(resource), _gender(resource)
    display_name = patient_name(resource) or ""
    normalised = normalise_name(display_name) if display_name.strip() else None
    is_baby = bool(normalised and normalised.is_baby)

    kind, token, issues = "none", None, ()
    own_nik = None
    for raw in _identifier_values(resource, settings.nik_system):
        try:
            nik = parse_nik(raw)
        except NikError as error:
            issues = (f"invalid-nik:{error.reason}",)
            continue
        kind, token, issues = "nik", nik_token(nik.value, key), tuple(nik_consistency(nik, birth_date, gender))
        if nik.serial == "0000":
            # No NIK is issued with serial 0000: it is a NIK whose last digit a spreadsheet cut off
            # (15 significant digits), so it names any of the kecamatan's people of that birth date and sex.
            issues += ("serial-zero",)
        own_nik = nik
        # A baby registered on a NIK whose decoded birth date is not the baby's: that is the
        # mother's NIK put in the wrong system, so the record belongs to the mother's group as a newborn.
        if is_baby and "nik-birthdate-mismatch" in issues:
            kind = "nik-ibu"
        break
    if kind == "none":
        for raw in _identifier_values(resource, settings.nik_ibu_system):
            try:
                nik = parse_nik(raw)
            except NikError as error:
                issues = (f"invalid-nik:{error.reason}",)
                continue
            kind, token, issues, is_baby = "nik-ibu", nik_token(nik.value, key), (), True
            break

    corroborators: set[str] = set()
    has_telecom = has_address = False
    for telecom in _list(resource.get("telecom")):
        if isinstance(telecom, dict) and telecom.get("system") in ("phone", "sms", None):
            value = telecom.get("value")
            phone = normalise_phone(value) if isinstance(value, str) else None
            if phone:
                has_telecom = True
                corroborators.add(_keyed("phone", phone, key))
    places: set[str] = set()
    home, home_texts = None, ()
    for address in _list(resource.get("address")):
        if isinstance(address, dict):
            text = " ".join(x for x in _list(address.get("line")) if isinstance(x, str))
            line = normalise_address(text)
            if line:
                has_address = True
                corroborators.add(_keyed("addr", line, key))
                names = place_words(text)
                words = [_keyed("place", word, key) for word in names]
                places.update(words)
                home = home or (words[0] if words else None)
                home_texts = home_texts or home_forms(names, address.get("line"))
    skip_systems = {settings.nik_system, settings.nik_ibu_system}
    for identifier in _list(resource.get("identifier")):
        if (isinstance(identifier, dict) and isinstance(identifier.get("system"), str)
                and identifier["system"] not in skip_systems and identifier["system"]
                and isinstance(identifier.get("value"), str) and identifier["value"]):
            corroborators.add(_keyed("id", f"{identifier['system']}|{identifier['value']}", key))

    golden = any(isinstance(t, dict) and t.get("system") == settings.golden_tag_system
                 and t.get("code") == patient_id for t in _list(meta.get("tag")))
    replaced_by = next((_reference_id(_dict(link.get("other")).get("reference"))
                        for link in _list(resource.get("link"))
                        if isinstance(link, dict) and link.get("type") == "replaced-by"), None)
    has_name = bool(normalised and normalised.text)
    version, last_updated = meta.get("versionId"), meta.get("lastUpdated")
    derived, region, masks, nik_prefix = [], None, (), None
    if own_nik is not None and kind == "nik":
        features = nik_features(own_nik, key)
        region, masks = features.region, features.masks
        nik_prefix = _keyed("nik12", own_nik.value[:12], key)
        # Fields the record lacks come from its NIK (for blocking and comparison only).
        if birth_date is None:
            birth_date = features.birth_date
            derived.append("birth_date")
        if gender is None:
            gender = features.gender
            derived.append("gender")
    return PatientFacts(
        patient_id=patient_id,
        version=str(version) if isinstance(version, (str, int)) and not isinstance(version, bool) else None,
        last_updated=last_updated if isinstance(last_updated, str) else None,
        active=resource.get("active") is not False,
        kind=kind,
        nik_token=token,
        nik_issues=issues,
        name=normalised.text if normalised else "",
        is_baby=is_baby,
        birth_date=birth_date,
        gender=gender,
        multiple_birth=_multiple_birth(resource),
        corroborators=tuple(sorted(corroborators)),
        golden=golden,
        replaced_by=replaced_by,
        source=_source(resource),
        score=completeness(has_name=has_name, birth_date=_birth_date(resource), gender=_gender(resource),
                           has_telecom=has_telecom, has_address=has_address,
                           nik_consistent=kind == "nik" and not issues),
        has_name=has_name,
        derived=tuple(derived),
        region=region,
        nik_masks=masks,
        nik_prefix_token=nik_prefix,
        places=tuple(sorted(places)),
        home=home,
        home_variants=tuple(sorted({_keyed("homev", variant, key)[:18] for text in home_texts
                                    for variant in typo_variants(text)})),
    )


def member_record(facts: PatientFacts) -> dict:
    """The index record of one patient (status is set by the matching decision)."""
    return {
        "version": facts.version,
        "last_updated": facts.last_updated,
        "kind": facts.kind,
        "nik_token": facts.nik_token,
        "nik_issues": list(facts.nik_issues),
        "name": facts.name,
        "is_baby": facts.is_baby,
        "birth_date": facts.birth_date,
        "gender": facts.gender,
        "multiple_birth": facts.multiple_birth,
        "corroborators": list(facts.corroborators),
        "active": facts.active,
        "golden": facts.golden,
        "replaced_by": facts.replaced_by,
        "source": facts.source,
        "score": facts.score,
        "derived": list(facts.derived),
        "region": facts.region,
        "nik_masks": list(facts.nik_masks),
        "places": list(facts.places),
        "home": facts.home,
        "home_variants": list(facts.home_variants),
    }


def _timestamp(value: str | None) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    # FHIR instants carry a zone; one without is read as UTC so the two always compare.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _version_number(version: object) -> int | None:
    """A numeric versionId as a number (ASCII digits within FHIR's 64-character id), else None."""
    if isinstance(version, int) and not isinstance(version, bool):
        return version if version >= 0 else None
    return int(version) if isinstance(version, str) and re.fullmatch(r"[0-9]{1,64}", version) else None


def is_newer(version: str | None, last_updated: str | None, stored: dict | None) -> bool:
    """Whether an incoming state is newer than the indexed one. Numeric versionIds (HAPI, sekmet)
    compare as numbers; opaque ones (Healthcare API) fall back to meta.lastUpdated. Unknown -> newer,
    so a state is never dropped for lack of information (processing it twice changes nothing)."""
    if not stored or stored.get("version") is None and not stored.get("last_updated"):
        return True
    stored_version = stored.get("version")
    incoming_number, stored_number = _version_number(version), _version_number(stored_version)
    if incoming_number is not None and stored_number is not None:
        return incoming_number > stored_number
    if version is not None and stored_version is not None and version == str(stored_version):
        return False
    incoming_time, stored_time = _timestamp(last_updated), _timestamp(stored.get("last_updated"))
    if incoming_time and stored_time:
        return incoming_time > stored_time
    return True
