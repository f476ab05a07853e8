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
message); events about other resource types come back as ``Ignored``. Ids outside FHIR's id grammar
(``shared.fhir.ids``; ``.`` and ``..`` included) are malformed.

Trust: every change carries its ``ChangeSource``; it is ``trusted`` (its body, version and delete
believed as they are) only when it is in the Healthcare API's format and the caller says the topic
has no other publisher (``Settings.trust_healthcare_notifications``, which Terraform sets where it
grants publish on the topic to the Healthcare service agent alone). Relayed bodies never are: anyone
who can reach the relay, or publish to its topic, can write one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from shared.fhir.ids import is_fhir_id
from shared.messages import (
    _ID,
    ChangeSource,
    Envelope,
    Ignored,
    MalformedEvent,
    PatientChange,
    envelope,
    json_body,
)

_RESOURCE_NAME = re.compile(
    rf"(?:^|/)fhir/(?P<type>[A-Z][A-Za-z]+)/(?P<id>{_ID})(?:/_history/(?P<version>[^/\s]+))?/?$")
_REFERENCE = re.compile(rf"(?:^|/)(?P<type>[A-Z][A-Za-z]+)/(?P<id>{_ID})(?:/_history/(?P<version>[^/\s]+))?/?$")
_ID_ONLY_KEYS = frozenset({"resourceType", "id", "meta"})
_STATUS_TYPES = frozenset({"SubscriptionStatus", "Parameters"})


def resource_name(data: bytes) -> re.Match:
    """A Healthcare API notification's body: the changed resource's name (``.../fhir/Type/id``)."""
    try:
        name = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise MalformedEvent("bad-resource-name") from None
    match = _RESOURCE_NAME.search(name)
    if not match:
        raise MalformedEvent("bad-resource-name")
    return match


def _looks_likejson_body(data: bytes) -> bool:
    return data.lstrip()[:1] in (b"{", b"[")


def _mapping(value: object) -> Mapping:
    return value if isinstance(value, Mapping) else {}


def _from_resource(resource: Mapping, source: ChangeSource, trusted: bool,
                   action: str = "upsert") -> PatientChange | Ignored:
    if resource.get("resourceType") != "Patient":
        return Ignored("not-patient")
    patient_id = resource.get("id")
    if not is_fhir_id(patient_id):
        raise MalformedEvent("bad-id")
    meta = resource.get("meta")
    if meta is not None and not isinstance(meta, Mapping):
        raise MalformedEvent("bad-meta")
    version = _mapping(meta).get("versionId")
    if isinstance(version, int) and not isinstance(version, bool) and 0 <= version < 10**18:
        version = str(version)  # lenient: a server that wrote versionId as a JSON number
    if version is not None and not is_fhir_id(version):
        raise MalformedEvent("bad-version")
    id_only = set(resource) <= _ID_ONLY_KEYS
    return PatientChange(patient_id, action, version, None if id_only or action == "delete" else dict(resource),
                         source, trusted)


def _version(match: re.Match) -> str | None:
    if match["version"] is not None and not is_fhir_id(match["version"]):
        raise MalformedEvent("bad-version")
    return match["version"]


def _healthcare_api(env: Envelope, trusted: bool) -> list[PatientChange] | Ignored:
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
        change = _from_resource(resource, ChangeSource.HEALTHCARE_API, trusted, action)
        return change if isinstance(change, Ignored) else [change]
    match = resource_name(env.data)
    if match["type"] != "Patient":
        return Ignored("not-patient")
    return [PatientChange(match["id"], action, _version(match), None, ChangeSource.HEALTHCARE_API, trusted)]


def _subscription(env: Envelope) -> list[PatientChange] | Ignored:
    method = env.attributes.get("httpMethod", "").upper()
    path_match = _REFERENCE.search(env.attributes.get("resourcePath", ""))
    if path_match and path_match["type"] != "Patient":
        return Ignored("not-patient")
    if not env.data.strip():
        if path_match:  # id-only ping for one resource
            return [PatientChange(path_match["id"], "delete" if method == "DELETE" else "upsert",
                                  None, None, ChangeSource.FHIR_SUBSCRIPTION)]
        return Ignored("ping")
    body = json_body(env.data)
    if not isinstance(body, Mapping):
        raise MalformedEvent("bad-resource")
    if body.get("resourceType") != "Bundle":
        change = _from_resource(body, ChangeSource.FHIR_SUBSCRIPTION, False,
                                "delete" if method == "DELETE" else "upsert")
        return change if isinstance(change, Ignored) else [change]
    changes: list[PatientChange] = []
    entries = body.get("entry")
    if entries is not None and not isinstance(entries, list):
        raise MalformedEvent("bad-entry")
    for entry in entries or []:
        if not isinstance(entry, Mapping):
            continue
        resource = entry.get("resource")
        request = _mapping(entry.get("request"))
        request_method = request.get("method")
        request_method = request_method.upper() if isinstance(request_method, str) else ""
        action = "delete" if request_method == "DELETE" else "upsert"
        if isinstance(resource, Mapping):
            if isinstance(resource.get("resourceType"), str) and resource["resourceType"] in _STATUS_TYPES:
                continue
            change = _from_resource(resource, ChangeSource.FHIR_SUBSCRIPTION, False, action)
            if isinstance(change, PatientChange):
                changes.append(change)
            continue
        reference = entry.get("fullUrl") or request.get("url") or ""
        match = _REFERENCE.search(reference) if isinstance(reference, str) else None
        if match and match["type"] == "Patient":
            changes.append(PatientChange(match["id"], action, _version(match), None, ChangeSource.FHIR_SUBSCRIPTION))
    return changes or Ignored("no-focus")


def parse_patient_change(event_data: object, *, trust_healthcare_api: bool = False) -> list[PatientChange] | Ignored:
    """The patient changes one patient-changes message announces (usually one). ``trust_healthcare_api``:
    the topic has no publisher but the Healthcare API (see the module doc)."""
    env = envelope(event_data)
    if env.attributes.get("source") == ChangeSource.FHIR_SUBSCRIPTION:
        return _subscription(env)
    return _healthcare_api(env, trust_healthcare_api)
