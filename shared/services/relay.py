"""Relays FHIR Subscription rest-hook notifications into the patient-changes topic.

Districts that run HAPI FHIR (or another server with R4 Subscriptions) instead of the Healthcare
API point a rest-hook Subscription at this relay; it authenticates the caller (``CallerVerifier``: a
Google ID token or a shared secret) and republishes the notification body unchanged, so the matching
function sees one topic whatever the server.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from shared.config import Settings
from shared.fhir.ids import FHIR_ID_PATTERN
from shared.logging import get_logger
from shared.messages import MalformedEvent, json_body
from shared.ports.callers import CallerRejected, CallerVerifier
from shared.ports.messaging import MessagePublisher

log = get_logger(__name__)

# R4 rest-hook "put-resource" style: PUT <endpoint>/<Type>/<id>
_RESOURCE_PATH = re.compile(rf"(?:^|/)(?P<type>[A-Z][A-Za-z]+)/(?P<id>{FHIR_ID_PATTERN})/?$")
# Pub/Sub's limit on a message (data and attributes): a larger body could never be published.
_MAX_BODY_BYTES = 10 * 1024 * 1024


def resource_path(path: object) -> tuple[str, str] | None:
    """``(type, id)`` of a rest-hook URL path ending in ``<Type>/<id>`` (FHIR's id grammar), else None."""
    match = _RESOURCE_PATH.search(path) if isinstance(path, str) else None
    return (match["type"], match["id"]) if match else None


@dataclass(frozen=True)
class RelayResult:
    status: int
    reason: str
    message_id: str | None = None


def _body_type(parsed: object) -> str | None:
    """The resourceType of a POSTed resource (None for a ping or a Bundle: those go to patient-changes,
    whose decoder looks inside)."""
    resource_type = parsed.get("resourceType") if isinstance(parsed, Mapping) else None
    return None if resource_type == "Bundle" or not isinstance(resource_type, str) else resource_type


def relay_notification(
    *, method: str, path: str, authorization: str | None, body: bytes, settings: Settings,
    publisher: MessagePublisher, verifier: CallerVerifier,
) -> RelayResult:
    """Verifies the caller, then publishes the body with id-only attributes.

    Answers 2xx for everything it accepts or deliberately ignores (so the FHIR server does not retry),
    401 for a caller it does not accept (``relay_rejected`` with a reason code: a log-based metric counts
    them, infra/modules/monitoring), 413 for a body over Pub/Sub's limit, 400 for a body that is not a
    JSON object (an empty body is an id-only ping), and raises if Pub/Sub fails (the server retries).
    """
    try:
        caller = verifier.verify(authorization)
    except CallerRejected as rejected:
        log.warning("relay_rejected", reason=rejected.reason, http_method=method)
        return RelayResult(401, rejected.reason)
    if len(body) > _MAX_BODY_BYTES:
        log.warning("relay_rejected", reason="body-too-large", size=len(body))
        return RelayResult(413, "body-too-large")
    parsed = None
    if body.strip():
        try:
            parsed = json_body(body)
            if not isinstance(parsed, Mapping):
                raise MalformedEvent("not-an-object")
        except MalformedEvent as error:
            # Not a FHIR notification: refused where the sender sees it, not published to be dropped.
            log.warning("relay_rejected", reason=error.reason, size=len(body))
            return RelayResult(400, error.reason)

    attributes = {"source": "fhir-subscription", "httpMethod": method.upper()}
    target = resource_path(path)
    resource_type = target[0] if target else _body_type(parsed)
    if target:
        attributes["resourcePath"] = f"{target[0]}/{target[1]}"
    # Patients go to matching; every other type to the live late-reference fix.
    topic = settings.topic_patient_changes if resource_type in ("Patient", None) else settings.topic_resource_changes
    message_id = publisher.publish_bytes(topic, body, **attributes)
    log.info("relay_published", message_id=message_id, topic=topic, resource_path=attributes.get("resourcePath"),
             caller=caller.principal)
    return RelayResult(202, "published", message_id)
