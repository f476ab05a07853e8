"""Pub/Sub entry points of matching: ``match_patient`` (patient-changes) and ``force_merge``
(ops-force-merge). Parse, call the service, return (ack) or raise (Pub/Sub redelivers).

A message that cannot be understood is logged once (message id + reason code, no patient data) and
acknowledged: redelivering it would never make it valid.
"""

from __future__ import annotations

from functools import partial

import functions_framework

from functions._delivery import parse_or_acknowledge
from shared.bootstrap import matching_service
from shared.config import get_settings
from shared.logging import get_logger
from shared.messages import ForceMerge, Ignored, decode
from shared.notifications import parse_patient_change

log = get_logger(__name__)


@functions_framework.cloud_event
def match_patient(cloud_event) -> None:
    settings = get_settings()
    parse = partial(parse_patient_change, trust_healthcare_api=settings.trust_healthcare_notifications)
    parsed = parse_or_acknowledge(cloud_event, parse, "patient-changes")
    if parsed is None:
        return
    if isinstance(parsed, Ignored):
        log.info("event_ignored", reason=parsed.reason)
        return
    service = matching_service(settings)
    for change in parsed:
        service.handle_change(change)


@functions_framework.cloud_event
def force_merge(cloud_event) -> None:
    command = parse_or_acknowledge(cloud_event, partial(decode, message_type=ForceMerge), "ops-force-merge")
    if command is not None:
        matching_service(get_settings()).force_merge(command)
