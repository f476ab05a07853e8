"""The formats others publish on the patient-changes topic, decoded into ``PatientChange``s. Pure.

- Google Cloud Healthcare API FHIR store notifications: ``data`` = the resource name
  ``projects/P/locations/L/datasets/D/fhirStores/S/fhir/Patient/ID[/_history/V]`` or, when the store
  sends full resources, the resource JSON; attributes ``action`` (``CreateResource``,
  ``UpdateResource``, ``PatchResource``, ``DeleteResource``), ``resourceType``, ``payloadType``, ...
  (parsed defensively: the attribute list is not fully documented).
- FHIR Subscription notifications relayed by ``subscription-relay`` (attribute
  ``source=fhir-subscription``): R4 rest-hook bodies (the resource, an id-only stub, or empty with
  ``resourcePath=Patient/<id>``), and R4B/R5 notification bundles (``history`` or
  ``subscription-notification``; the first entry is the ``SubscriptionStatus``/``Parameters``,
  the rest are focus resources or bare ``fullUrl``s).

What cannot be understood raises ``MalformedEvent`` with a short reason code (never a value from the
message); events about other resource types come back as ``Ignored``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from shared.messages import _ID, Envelope, Ignored, MalformedEvent, PatientChange, envelope, json_body

_RESOURCE_NAME = re.compile(
    rf"(?:^|/)fhir/(?P<type>[A-Z][A-Za-z]+)/(?P<id>{_ID})(?:/_history/(?P<version>[^/\s]+))?/?$")
_REFERENCE = re.compile(rf"(?:^|/)(?P<type>[A-Z][A-Za-z]+)/(?P<id>{_ID})(?:/_history/(?P<version>[^/\s]+))?/?$")
_ID_ONLY_KEYS = frozenset({"resourceType", "id", "meta"})
_STATUS_TYPES = frozenset({"SubscriptionStatus", "Parameters"})


def _looks_likejson_body(data: bytes) -> bool:
    return data.lstrip()[:1] in (b"{", b"[")


def _from_resource(resource: Mapping, source: str, action: str = "upsert") -> PatientChange | Ignored:
    if resource.get("resourceType") != "Patient":
        return Ignored("not-patient")
    patient_id = resource.get("id")
    if not isinstance(patient_id, str) or not re.fullmatch(_ID, patient_id):
        raise MalformedEvent("bad-id")
    version = (resource.get("meta") or {}).get("versionId")
    version = str(version) if version is not None else None
    id_only = set(resource) <= _ID_ONLY_KEYS
    return PatientChange(patient_id, action, version, None if id_only or action == "delete" else dict(resource),
                         source)


def _healthcare_api(env: Envelope) -> list[PatientChange] | Ignored:
    resource_type = env.attributes.get("resourceType")
    if resource_type and resource_type != "Patient":
        return Ignored("not-patient")
    action = "delete" if env.attributes.get("action") == "DeleteResource" else "upsert"
    if not env.data.strip():
        raise MalformedEvent("empty-data")
    if _looks_likejson_body(env.data):
        resource = json_body(env.data)
        if not isinstance(resource, Mapping):
            raise MalformedEvent("bad-resource")
        change = _from_resource(resource, "healthcare-api", action)
        return change if isinstance(change, Ignored) else [change]
    try:
        name = env.data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise MalformedEvent("bad-resource-name") from None
    match = _RESOURCE_NAME.search(name)
    if not match:
        raise MalformedEvent("bad-resource-name")
    if match["type"] != "Patient":
        return Ignored("not-patient")
    return [PatientChange(match["id"], action, match["version"], None, "healthcare-api")]


def _subscription(env: Envelope) -> list[PatientChange] | Ignored:
    method = env.attributes.get("httpMethod", "").upper()
    path_match = _REFERENCE.search(env.attributes.get("resourcePath", ""))
    if path_match and path_match["type"] != "Patient":
        return Ignored("not-patient")
    if not env.data.strip():
        if path_match:  # id-only ping for one resource
            return [PatientChange(path_match["id"], "delete" if method == "DELETE" else "upsert",
                                  None, None, "fhir-subscription")]
        return Ignored("ping")
    body = json_body(env.data)
    if not isinstance(body, Mapping):
        raise MalformedEvent("bad-resource")
    if body.get("resourceType") != "Bundle":
        change = _from_resource(body, "fhir-subscription", "delete" if method == "DELETE" else "upsert")
        return change if isinstance(change, Ignored) else [change]
    changes: list[PatientChange] = []
    for entry in body.get("entry") or []:
        if not isinstance(entry, Mapping):
            continue
        resource = entry.get("resource")
        request_method = str((entry.get("request") or {}).get("method") or "").upper()
        action = "delete" if request_method == "DELETE" else "upsert"
        if isinstance(resource, Mapping):
            if resource.get("resourceType") in _STATUS_TYPES:
                continue
            change = _from_resource(resource, "fhir-subscription", action)
            if isinstance(change, PatientChange):
                changes.append(change)
            continue
        reference = entry.get("fullUrl") or (entry.get("request") or {}).get("url") or ""
        match = _REFERENCE.search(str(reference))
        if match and match["type"] == "Patient":
            changes.append(PatientChange(match["id"], action, match["version"], None, "fhir-subscription"))
    return changes or Ignored("no-focus")


def parse_patient_change(event_data: object) -> list[PatientChange] | Ignored:
    """The patient changes one patient-changes message announces (usually one)."""
    env = envelope(event_data)
    if env.attributes.get("source") == "fhir-subscription":
        return _subscription(env)
    return _healthcare_api(env)
