"""What a merge does to the patients themselves, and the Provenance that records it (pure).

Survivorship rules (README, "Merge pipeline"): the master keeps everything it has; from the
duplicates it only gains what it lacks --
- identifiers it does not carry (same system|value counts as carried), copied with ``use: old``,
  except the NIK identifier, copied as it is (it is the same person's NIK);
- telecom entries (same system|value counts as present) and addresses it does not have;
- ``birthDate`` / ``gender`` only when the master has none and every duplicate that has one agrees.
Each addition is returned in ``added`` so an unmerge can take exactly those back out.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

# ISO 21089 lifecycle events, the code system FHIR's Provenance activity examples use for merges.
LIFECYCLE_SYSTEM = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle"
PARTICIPANT_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
EVIDENCE_EXTENSION_URL = "https://fhir.dedup.local/StructureDefinition/merge-evidence"
AGENT_SYSTEM = "https://fhir.dedup.local/id/agent"
SERVICE_AGENT = "patient-dedup-service"


def _ref(patient_id: str) -> str:
    return f"Patient/{patient_id}"


def _has_link(patient: dict, other_id: str, link_type: str) -> bool:
    return any(
        link.get("type") == link_type and (link.get("other") or {}).get("reference") == _ref(other_id)
        for link in patient.get("link", [])
    )


def _address_key(address: dict) -> tuple:
    # use/period describe when an address applied, not where it is
    return tuple(sorted((k, repr(v)) for k, v in address.items() if k not in ("use", "period")))


def link_duplicate(duplicate: dict, master_id: str) -> dict:
    """The duplicate made inactive and pointing to its master (idempotent; other links kept)."""
    out = copy.deepcopy(duplicate)
    out["active"] = False
    if not _has_link(out, master_id, "replaced-by"):
        out.setdefault("link", []).append({"other": {"reference": _ref(master_id)}, "type": "replaced-by"})
    return out


def fill_master(
    master: dict, duplicates: list[dict], *, golden_tag_system: str, nik_system: str
) -> tuple[dict, dict]:
    """(new master, added). Idempotent: applied to its own output it adds nothing."""
    out = copy.deepcopy(master)
    master_id = out["id"]
    added: dict = {"link": [], "identifier": [], "telecom": [], "address": []}

    for duplicate in duplicates:
        if not _has_link(out, duplicate["id"], "replaces"):
            link = {"other": {"reference": _ref(duplicate["id"])}, "type": "replaces"}
            out.setdefault("link", []).append(link)
            added["link"].append(link)

    tags = out.setdefault("meta", {}).setdefault("tag", [])
    if not any(t.get("system") == golden_tag_system and t.get("code") == master_id for t in tags):
        tags.append({"system": golden_tag_system, "code": master_id})
        added["tag"] = {"system": golden_tag_system, "code": master_id}

    carried = {(i.get("system"), i.get("value")) for i in out.get("identifier", [])}
    for duplicate in duplicates:
        for identifier in duplicate.get("identifier", []):
            key = (identifier.get("system"), identifier.get("value"))
            if not identifier.get("value") or key in carried:
                continue
            copied = copy.deepcopy(identifier)
            if identifier.get("system") != nik_system:
                copied["use"] = "old"
            out.setdefault("identifier", []).append(copied)
            added["identifier"].append(copied)
            carried.add(key)

    present = {(t.get("system"), t.get("value")) for t in out.get("telecom", [])}
    for duplicate in duplicates:
        for telecom in duplicate.get("telecom", []):
            key = (telecom.get("system"), telecom.get("value"))
            if not telecom.get("value") or key in present:
                continue
            out.setdefault("telecom", []).append(copy.deepcopy(telecom))
            added["telecom"].append(copy.deepcopy(telecom))
            present.add(key)

    addresses = {_address_key(a) for a in out.get("address", [])}
    for duplicate in duplicates:
        for address in duplicate.get("address", []):
            key = _address_key(address)
            if not key or key in addresses:
                continue
            out.setdefault("address", []).append(copy.deepcopy(address))
            added["address"].append(copy.deepcopy(address))
            addresses.add(key)

    for field in ("birthDate", "gender"):
        values = {d[field] for d in duplicates if d.get(field)}
        if not out.get(field) and len(values) == 1:
            out[field] = values.pop()
            added[field] = out[field]

    for key in ("link", "identifier", "telecom", "address"):
        if not out.get(key):
            out.pop(key, None)
    if not out["meta"].get("tag"):
        out["meta"].pop("tag")
    return out, {k: v for k, v in added.items() if v}


def revert_master(current: dict, added: dict) -> dict:
    """Takes out of the (possibly since edited) master exactly what the merge added."""
    out = copy.deepcopy(current)
    for key in ("link", "identifier", "telecom", "address"):
        if key in added and key in out:
            remaining = list(out[key])
            for item in added[key]:
                if item in remaining:
                    remaining.remove(item)
            if remaining:
                out[key] = remaining
            else:
                out.pop(key)
    if "tag" in added:
        tags = [t for t in out.get("meta", {}).get("tag", []) if t != added["tag"]]
        if tags:
            out["meta"]["tag"] = tags
        else:
            out.get("meta", {}).pop("tag", None)
    for field in ("birthDate", "gender"):
        if field in added and out.get(field) == added[field]:
            out.pop(field)
    return out


def revert_duplicate(current: dict, before: dict, master_id: str) -> dict:
    """The duplicate's ``active`` as before the merge and its replaced-by link to the master removed."""
    out = copy.deepcopy(current)
    if "active" in before:
        out["active"] = before["active"]
    else:
        out.pop("active", None)
    if not _has_link(before, master_id, "replaced-by"):
        links = [
            link for link in out.get("link", [])
            if not (link.get("type") == "replaced-by" and (link.get("other") or {}).get("reference") == _ref(master_id))
        ]
        if links:
            out["link"] = links
        else:
            out.pop("link", None)
    return out


def build_provenance(
    *,
    master_id: str,
    master_version: str | None,
    duplicate_versions: dict[str, str],
    activity: str,
    reason: str,
    requested_by: str | None,
    evidence: dict | None,
    job_id: str,
    recorded: datetime | None = None,
) -> dict:
    """A Provenance for a merge or an unmerge (``activity`` = "merge" | "unmerge")."""
    target = _ref(master_id) + (f"/_history/{master_version}" if master_version else "")
    agents = [
        {
            "type": {"coding": [{"system": PARTICIPANT_TYPE_SYSTEM, "code": "performer"}]},
            "who": {"identifier": {"system": AGENT_SYSTEM, "value": SERVICE_AGENT}, "display": SERVICE_AGENT},
        }
    ]
    if requested_by and requested_by != SERVICE_AGENT:
        agents.append(
            {
                "type": {"coding": [{"system": PARTICIPANT_TYPE_SYSTEM, "code": "author"}]},
                "who": {"identifier": {"system": AGENT_SYSTEM, "value": requested_by}, "display": requested_by},
            }
        )
    provenance = {
        "resourceType": "Provenance",
        "target": [{"reference": target}],
        "recorded": (recorded or datetime.now(UTC)).isoformat(timespec="seconds"),
        "activity": {"coding": [{"system": LIFECYCLE_SYSTEM, "code": activity}]},
        "reason": [{"text": f"{reason} (merge job {job_id})"}],
        "agent": agents,
        "entity": [
            {"role": "source", "what": {"reference": f"{_ref(pid)}/_history/{version}"}}
            for pid, version in sorted(duplicate_versions.items())
        ],
    }
    if evidence:
        # the match evidence (scores, rule names, ids) as a JSON string; it never carries NIK or names
        provenance["extension"] = [
            {"url": EVIDENCE_EXTENSION_URL, "valueString": json.dumps(evidence, sort_keys=True, default=str)}
        ]
    return provenance
