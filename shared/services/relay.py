"""Relays FHIR Subscription rest-hook notifications into the patient-changes topic.

Districts that run HAPI FHIR (or another server with R4 Subscriptions) instead of the Healthcare
API point a rest-hook Subscription at this relay; it authenticates the caller and republishes the
notification body unchanged, so the matching function sees one topic whatever the server.
"""

from __future__ import annotations

import hmac
import json
import re
from dataclasses import dataclass

from shared.config import Settings
from shared.logging import get_logger
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


def _body_type(body: bytes) -> str | None:
    """The resourceType of a POSTed resource (None for a ping, a Bundle or what is not JSON: those
    go to patient-changes, whose decoder looks inside)."""
    try:
        resource_type = json.loads(body).get("resourceType") if body.strip() else None
    except (ValueError, AttributeError):
        return None
    return None if resource_type == "Bundle" else resource_type


def caller_authorized(authorization: str | None, settings: Settings) -> bool:
    """Whether the caller of one of our HTTP functions presented the expected credentials. The one
    check the relay and ``Patient/$merge`` (``functions/patient_merge.py``) share."""
    expected = f"Bearer {settings.relay_token.get_secret_value()}"
    return bool(authorization) and hmac.compare_digest(authorization.encode(), expected.encode())


def relay_notification(
    *, method: str, path: str, authorization: str | None, body: bytes, settings: Settings, publisher: MessagePublisher
) -> RelayResult:
    """Checks the bearer token, then publishes the body with id-only attributes.

    Answers 2xx for everything it accepts or deliberately ignores (so the FHIR server does not retry),
    401 for a wrong token, 413 for an oversized body, and raises if Pub/Sub fails (the server retries).
    """
    if not caller_authorized(authorization, settings):
        log.warning("relay_rejected", reason="bad-token", http_method=method)
        return RelayResult(401, "bad-token")
    if len(body) > _MAX_BODY_BYTES:
        log.warning("relay_rejected", reason="body-too-large", size=len(body))
        return RelayResult(413, "body-too-large")

    attributes = {"source": "fhir-subscription", "httpMethod": method.upper()}
    match = _RESOURCE_PATH.search(path or "")
    resource_type = match["type"] if match else _body_type(body)
    if match:
        attributes["resourcePath"] = f"{match['type']}/{match['id']}"
    # Patients go to matching; every other type to the live late-reference fix.
    topic = settings.topic_patient_changes if resource_type in ("Patient", None) else settings.topic_resource_changes
    message_id = publisher.publish_bytes(topic, body, **attributes)
    log.info("relay_published", message_id=message_id, topic=topic, resource_path=attributes.get("resourcePath"))
    return RelayResult(202, "published", message_id)
