"""Parsing incoming Pub/Sub events into what matching works on. Pure: no I/O, no logging.

Accepted on the patient-changes topic (REFERENCE.md, docs/DESIGN.md):
- Google Cloud Healthcare API FHIR store notifications: ``data`` = the resource name
  ``projects/P/locations/L/datasets/D/fhirStores/S/fhir/Patient/ID[/_history/V]`` or, when the store
  sends full resources, the resource JSON; attributes ``action``, ``resourceType``, ``payloadType``...
- FHIR Subscription notifications relayed by ``subscription-relay`` (attribute
  ``source=fhir-subscription``): R4 rest-hook bodies (the resource, an id-only stub, or empty with
  ``resourcePath=Patient/<id>``), and R4B/R5 notification bundles (``history`` or
  ``subscription-notification``; the first entry is the ``SubscriptionStatus``/``Parameters``,
  the rest are focus resources or bare ``fullUrl``s).

Anything that cannot be understood raises ``MalformedEvent`` with a short reason code (never a value
from the message); events about other resource types come back as ``Ignored``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

_ID = r"[A-Za-z0-9\-.]{1,64}"
_RESOURCE_NAME = re.compile(
    rf"(?:^|/)fhir/(?P<type>[A-Z][A-Za-z]+)/(?P<id>{_ID})(?:/_history/(?P<version>[^/\s]+))?/?$")
_REFERENCE = re.compile(rf"(?:^|/)(?P<type>[A-Z][A-Za-z]+)/(?P<id>{_ID})(?:/_history/(?P<version>[^/\s]+))?/?$")
_ID_ONLY_KEYS = frozenset({"resourceType", "id", "meta"})
_STATUS_TYPES = frozenset({"SubscriptionStatus", "Parameters"})


class MalformedEvent(ValueError):
    def __init__(self, reason: str):
        super().__init__(f"malformed event: {reason}")
        self.reason = reason


@dataclass(frozen=True)
class Ignored:
    reason: str  # e.g. "not-patient", "ping", "no-focus"


@dataclass(frozen=True)
class PatientChange:
    patient_id: str
    action: str  # "upsert" | "delete"
    version: str | None = None  # versionId when the event names one
    resource: dict | None = field(default=None, repr=False)  # None: read it from FHIR
    source: str = "healthcare-api"


@dataclass(frozen=True)
class ForceMerge:
    nik: str = field(repr=False)  # raw NIK: never logged, never stored
    reason: str = ""
    requested_by: str = ""
    patient_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Envelope:
    message_id: str | None
    attributes: dict
    data: bytes


def envelope(event_data: object) -> Envelope:
    """The Pub/Sub message inside a ``messagePublished`` CloudEvent's data."""
    if not isinstance(event_data, Mapping):
        raise MalformedEvent("no-message")
    message = event_data.get("message")
    if not isinstance(message, Mapping):
        raise MalformedEvent("no-message")
    attributes = message.get("attributes") or {}
    if not isinstance(attributes, Mapping):
        raise MalformedEvent("bad-attributes")
    raw = message.get("data") or ""
    try:
        data = base64.b64decode(raw, validate=True) if isinstance(raw, str) else bytes(raw)
    except (binascii.Error, ValueError, TypeError):
        raise MalformedEvent("bad-base64") from None
    message_id = message.get("messageId") or message.get("message_id")
    return Envelope(str(message_id) if message_id else None, {str(k): str(v) for k, v in attributes.items()},
                    data)


def _json(data: bytes) -> object:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise MalformedEvent("bad-json") from None


def _looks_like_json(data: bytes) -> bool:
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
    if _looks_like_json(env.data):
        resource = _json(env.data)
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
    body = _json(env.data)
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


def parse_force_merge(event_data: object) -> ForceMerge:
    env = envelope(event_data)
    body = _json(env.data)
    if not isinstance(body, Mapping):
        raise MalformedEvent("bad-body")
    nik = body.get("nik")
    if not isinstance(nik, (str, int)) or not str(nik).strip():
        raise MalformedEvent("missing-nik")
    reason, requested_by = body.get("reason"), body.get("requested_by")
    if not isinstance(reason, str) or not reason.strip():
        raise MalformedEvent("missing-reason")
    if not isinstance(requested_by, str) or not requested_by.strip():
        raise MalformedEvent("missing-requested-by")
    patient_ids = body.get("patient_ids") or []
    if not isinstance(patient_ids, list) or not all(
            isinstance(p, str) and re.fullmatch(_ID, p) for p in patient_ids):
        raise MalformedEvent("bad-patient-ids")
    return ForceMerge(str(nik), reason.strip(), requested_by.strip(), tuple(dict.fromkeys(patient_ids)))
