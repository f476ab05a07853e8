"""Pub/Sub entry points of the merge pipeline (docs/DESIGN.md, "Functions").

Each parses its CloudEvent and calls one service; an exception makes Pub/Sub redeliver.
"""

from __future__ import annotations

import functions_framework

from functions._delivery import parse_or_acknowledge
from shared.bootstrap import merge_deps
from shared.config import get_settings
from shared.services.merge import decode_pubsub_message, fan_out, finalise, run_task


def _handle(cloud_event, topic: str, required: tuple[str, ...], service) -> None:
    message = parse_or_acknowledge(cloud_event, lambda data: decode_pubsub_message(data, required), topic)
    if message is not None:
        service(message, merge_deps(get_settings()))


@functions_framework.cloud_event
def merge_fanout(cloud_event):
    _handle(cloud_event, "merge-requests", ("request_id",), fan_out)


@functions_framework.cloud_event
def merge_worker(cloud_event):
    _handle(cloud_event, "merge-tasks", ("job_id", "resource_type"), run_task)


@functions_framework.cloud_event
def merge_finaliser(cloud_event):
    _handle(cloud_event, "merge-finalise", ("job_id",), finalise)
