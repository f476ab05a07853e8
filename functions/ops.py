"""Scheduled ops work: ``reconcile`` (ops-reconcile topic, published by Cloud Scheduler) rewrites
references that reached a duplicate after its merge finished. Body: ``{"full": bool}``."""

from __future__ import annotations

import json

import functions_framework

from functions._delivery import parse_or_acknowledge
from shared.bootstrap import merge_deps
from shared.config import get_settings
from shared.services.events import MalformedEvent
from shared.services.merge import decode_pubsub_message
from shared.services.reconcile import reconcile


def _full_scan(data) -> bool:
    body = decode_pubsub_message(data, ())
    full = body.get("full", False)
    if not isinstance(full, bool):
        raise MalformedEvent("full-not-boolean")
    return full


@functions_framework.cloud_event
def reconcile_late_references(cloud_event) -> None:
    full = parse_or_acknowledge(cloud_event, _full_scan, "ops-reconcile")
    if full is None:
        return
    report = reconcile(merge_deps(get_settings()), full=full)
    if report.failures:
        # Redelivered with backoff: the failures are resources that changed under us (412 twice).
        raise RuntimeError(f"reconcile left {len(report.failures)} resource(s); details: "
                           + json.dumps(report.failures[:5]))
