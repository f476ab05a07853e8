"""Relays FHIR Subscription rest-hook notifications into the patient-changes topic.

Districts that run HAPI FHIR (or another server with R4 Subscriptions) instead of the Healthcare
API point a rest-hook Subscription at this relay; it authenticates the caller (``CallerVerifier``: a
Google ID token or a shared secret) and republishes the notification body unchanged, so the matching
function sees one topic whatever the server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.config import Settings
from shared.logging import get_logger
from shared.ports.callers import CallerRejected, CallerVerifier
from shared.ports.messaging import MessagePublisher

log = get_logger(__name__)

# R4 rest-hook "put-resource" style: PUT <endpoint>/<Type>/<id>
_RESOURCE_PATH = re.compile(r"(?:^|/)(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})/?$")
_MAX_BODY_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class RelayResult:
    status: int
    reason: str
    message_id: str | None = None


def relay_notification(
    *, method: str, path: str, authorization: str | None, body: bytes, settings: Settings,
    publisher: MessagePublisher, verifier: CallerVerifier,
) -> RelayResult:
    """Verifies the caller, then publishes the body with id-only attributes.

    Answers 2xx for everything it accepts or deliberately ignores (so the FHIR server does not retry),
    401 for a caller it does not accept (``relay_rejected`` with a reason code: a log-based metric counts
    them, infra/modules/monitoring), 413 for an oversized body, and raises if Pub/Sub fails (the server
    retries).
    """
    try:
        caller = verifier.verify(authorization)
    except CallerRejected as rejected:
        log.warning("relay_rejected", reason=rejected.reason, http_method=method)
        return RelayResult(401, rejected.reason)
    if len(body) > _MAX_BODY_BYTES:
        log.warning("relay_rejected", reason="body-too-large", size=len(body))
        return RelayResult(413, "body-too-large")

    attributes = {"source": "fhir-subscription", "httpMethod": method.upper()}
    match = _RESOURCE_PATH.search(path or "")
    if match:
        if match["type"] != "Patient":
            # Subscriptions should filter on Patient; anything else is dropped cheaply.
            log.info("relay_ignored", reason="not-a-patient", resource_type=match["type"])
            return RelayResult(200, "ignored-not-patient")
        attributes["resourcePath"] = f"Patient/{match['id']}"
    message_id = publisher.publish_bytes(settings.topic_patient_changes, body, **attributes)
    log.info("relay_published", message_id=message_id, resource_path=attributes.get("resourcePath"),
             caller=caller.principal)
    return RelayResult(202, "published", message_id)
