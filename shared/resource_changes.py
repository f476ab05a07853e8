"""The resource-changes topic's messages, decoded into ``ResourceChanged``s. Pure.

Two formats, as on patient-changes (``shared.notifications``): Healthcare API notifications (data =
the resource name, or the resource when the store sends full resources; attribute ``action``) and
FHIR Subscription notifications relayed by ``subscription-relay`` (attribute
``source=fhir-subscription``, ``resourcePath=<Type>/<id>``, data = the resource or empty). Patients,
deletes and audit records (Provenance, AuditEvent: they name merged duplicates on purpose) are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shared.fhir.compartment import AUDIT_TYPES
from shared.messages import Ignored, MalformedEvent, envelope, json_body
from shared.notifications import _REFERENCE, resource_name

IGNORED_TYPES = AUDIT_TYPES | {"Patient"}


@dataclass(frozen=True)
class ResourceChanged:
    resource_type: str
    id: str
    resource: dict | None   # as notified, when the notification carried it (may be stale: written with ifMatch)


def _from_body(data: bytes, fallback: tuple[str, str] | None) -> ResourceChanged:
    resource = json_body(data)
    if not isinstance(resource, Mapping) or not isinstance(resource.get("resourceType"), str):
        raise MalformedEvent("bad-resource")
    resource_type, resource_id = resource["resourceType"], resource.get("id")
    if not isinstance(resource_id, str):
        if fallback is None:
            raise MalformedEvent("bad-id")
        resource_type, resource_id = fallback
    full = set(resource) - {"resourceType", "id", "meta"}
    return ResourceChanged(resource_type, resource_id, dict(resource) if full else None)


def parse_resource_change(event_data: object) -> list[ResourceChanged] | Ignored:
    env = envelope(event_data)
    attributes = env.attributes
    if attributes.get("action") == "DeleteResource" or attributes.get("httpMethod", "").upper() == "DELETE":
        return Ignored("delete")
    if attributes.get("source") == "fhir-subscription":
        match = _REFERENCE.search(attributes.get("resourcePath", ""))
        fallback = (match["type"], match["id"]) if match else None
        if not env.data.strip():
            if fallback is None:
                return Ignored("ping")
            change = ResourceChanged(fallback[0], fallback[1], None)
        else:
            change = _from_body(env.data, fallback)
    elif env.data.lstrip()[:1] == b"{":
        change = _from_body(env.data, None)
    else:
        match = resource_name(env.data)
        change = ResourceChanged(match["type"], match["id"], None)
    if change.resource_type in IGNORED_TYPES:
        return Ignored("not-clinical")
    return [change]
