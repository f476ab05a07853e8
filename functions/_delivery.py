"""What every Pub/Sub entry point does with a message it cannot understand: one log line (message id
and a reason code, never its content) and an acknowledgement, because no redelivery could fix it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from shared.logging import get_logger
from shared.messages import MalformedEvent, message_id

log = get_logger(__name__)
T = TypeVar("T")


def parse_or_acknowledge(cloud_event, parse: Callable[[object], T], topic: str) -> T | None:
    """``parse(cloud_event.data)``, or None (the caller returns, so Pub/Sub acks) for a malformed message."""
    try:
        return parse(cloud_event.data)
    except MalformedEvent as error:
        log.warning("event_malformed", message_id=message_id(cloud_event.data), reason=error.reason, topic=topic)
        return None
