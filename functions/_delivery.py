"""What every Pub/Sub entry point does with a message it cannot understand: it puts the message,
unchanged, on the quarantine topic (``shared/services/quarantine.py``: ops list and replay it), logs
one line (message id and a reason code, never its content; a log-based metric counts these lines and
alerts, infra/modules/monitoring) and acknowledges it, because no redelivery could fix it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from shared.bootstrap import publisher
from shared.config import get_settings
from shared.logging import get_logger
from shared.messages import MalformedEvent, message_id
from shared.services.quarantine import quarantine

log = get_logger(__name__)
T = TypeVar("T")
# The log event the quarantine metric counts (infra/modules/monitoring; tests/infra holds them together).
QUARANTINED_EVENT = "event_malformed"


def parse_or_acknowledge(cloud_event, parse: Callable[[object], T], topic: str) -> T | None:
    """``parse(cloud_event.data)``, or None (the caller returns, so Pub/Sub acks) for a malformed
    message once it is quarantined; a failed quarantine publish raises (Pub/Sub redelivers)."""
    try:
        return parse(cloud_event.data)
    except MalformedEvent as error:
        settings = get_settings()
        kept_as = quarantine(cloud_event.data, reason=error.reason, origin_topic=topic,
                             publisher=publisher(settings), topic=settings.topic_quarantine)
        log.warning(QUARANTINED_EVENT, message_id=message_id(cloud_event.data), reason=error.reason, topic=topic,
                    quarantine_message_id=kept_as)
        return None
