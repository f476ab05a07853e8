"""Pub/Sub entry points of matching: ``match_patient`` (patient-changes) and ``force_merge``
(ops-force-merge). Parse, call the service, return (ack) or raise (Pub/Sub redelivers).

A message that cannot be understood is logged once (message id + reason code, no patient data) and
acknowledged: redelivering it would never make it valid.
"""

from __future__ import annotations

import functions_framework

from shared.bootstrap import matching_service
from shared.config import get_settings
from shared.logging import get_logger
from shared.services.events import Ignored, MalformedEvent, parse_force_merge, parse_patient_change

log = get_logger(__name__)


def _message_id(data: object) -> str | None:
    message = data.get("message") if isinstance(data, dict) else None
    return (message.get("messageId") or message.get("message_id")) if isinstance(message, dict) else None


@functions_framework.cloud_event
def match_patient(cloud_event) -> None:
    message_id = _message_id(cloud_event.data)
    try:
        parsed = parse_patient_change(cloud_event.data)
    except MalformedEvent as error:
        log.warning("event_malformed", message_id=message_id, reason=error.reason, topic="patient-changes")
        return
    if isinstance(parsed, Ignored):
        log.info("event_ignored", message_id=message_id, reason=parsed.reason)
        return
    service = matching_service(get_settings())
    for change in parsed:
        service.handle_change(change)


@functions_framework.cloud_event
def force_merge(cloud_event) -> None:
    message_id = _message_id(cloud_event.data)
    try:
        command = parse_force_merge(cloud_event.data)
    except MalformedEvent as error:
        log.warning("event_malformed", message_id=message_id, reason=error.reason, topic="ops-force-merge")
        return
    matching_service(get_settings()).force_merge(command)
