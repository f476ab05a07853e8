"""Pub/Sub entry points of the merge pipeline (docs/DESIGN.md, "Functions").

Each parses its CloudEvent and calls one service; an exception makes Pub/Sub redeliver.
"""

from __future__ import annotations

import functions_framework

from shared.bootstrap import merge_deps
from shared.config import get_settings
from shared.logging import get_logger
from shared.services.merge import MalformedMessage, decode_pubsub_message, fan_out, finalise, run_task

log = get_logger(__name__)


def _deps():
    return merge_deps(get_settings())


def _handle(cloud_event, required: tuple[str, ...], service) -> None:
    try:
        message = decode_pubsub_message(cloud_event.data, required)
    except MalformedMessage as error:
        message_id = ((cloud_event.data or {}).get("message") or {}).get("messageId")
        log.warning("event_malformed", message_id=message_id, reason=str(error))
        return
    service(message, _deps())


@functions_framework.cloud_event
def merge_fanout(cloud_event):
    _handle(cloud_event, ("request_id",), fan_out)


@functions_framework.cloud_event
def merge_worker(cloud_event):
    _handle(cloud_event, ("job_id", "resource_type"), run_task)


@functions_framework.cloud_event
def merge_finaliser(cloud_event):
    _handle(cloud_event, ("job_id",), finalise)
