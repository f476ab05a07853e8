"""The quarantine use case: a message no entry point can understand is kept, unchanged, where ops can
read and replay it, instead of being acknowledged into nothing.

``quarantine`` publishes the Pub/Sub message's raw data and attributes as they came to the quarantine
topic (``Settings.topic_quarantine``; a pull subscription ``<topic>-hold`` keeps them, infra/), adding
``quarantine_reason`` (the ``MalformedEvent`` reason code) and ``origin_topic``. A failed publish
raises, so the original message is redelivered (and dead-lettered at worst): nothing is lost silently.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping

from shared.ports.messaging import MessagePublisher

QUARANTINE_REASON = "quarantine_reason"
ORIGIN_TOPIC = "origin_topic"
# Set when the CloudEvent held no Pub/Sub message to keep as it was: the data is the CloudEvent's
# data as JSON instead.
WHOLE_EVENT = "quarantine_whole_event"


def raw_message(event_data: object) -> tuple[bytes, dict[str, str]]:
    """The Pub/Sub message inside a CloudEvent's data as bytes and string attributes, as it was sent."""
    message = event_data.get("message") if isinstance(event_data, Mapping) else None
    if isinstance(message, Mapping):
        raw, attributes = message.get("data"), message.get("attributes") or {}
        if isinstance(attributes, Mapping) and all(isinstance(k, str) and isinstance(v, str)
                                                   for k, v in attributes.items()):
            if isinstance(raw, (bytes, bytearray)):
                return bytes(raw), dict(attributes)
            if raw is None or isinstance(raw, str):
                try:
                    return base64.b64decode(raw or "", validate=True), dict(attributes)
                except (binascii.Error, ValueError):
                    pass
    try:
        whole = json.dumps(event_data, default=repr, sort_keys=True)
    except (ValueError, RecursionError):  # too deep, or an int past str()'s digit limit
        whole = repr(type(event_data))
    return whole.encode("utf-8", "backslashreplace"), {WHOLE_EVENT: "true"}


def quarantine(event_data: object, *, reason: str, origin_topic: str, publisher: MessagePublisher,
               topic: str) -> str:
    """Publishes the malformed message to ``topic``; returns the quarantine message's id."""
    data, attributes = raw_message(event_data)
    attributes = {**attributes, QUARANTINE_REASON: reason, ORIGIN_TOPIC: origin_topic}
    return publisher.publish_bytes(topic, data, **attributes)
