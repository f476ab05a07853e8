"""Scheduled ops work: ``reconcile`` (ops-reconcile topic, published by Cloud Scheduler) rewrites
references that reached a duplicate after its merge finished. Body: ``{"full": bool}``."""

from __future__ import annotations

import json
from functools import partial

import functions_framework

from functions._delivery import parse_or_acknowledge
from shared.bootstrap import merge_deps
from shared.config import get_settings
from shared.messages import ReconcileRun, decode
from shared.services.reconcile import reconcile


@functions_framework.cloud_event
def reconcile_late_references(cloud_event) -> None:
    run = parse_or_acknowledge(cloud_event, partial(decode, message_type=ReconcileRun), "ops-reconcile")
    if run is None:
        return
    report = reconcile(merge_deps(get_settings()), full=run.full)
    if report.failures:
        # Redelivered with backoff: the failures are resources that changed under us (412 twice).
        raise RuntimeError(f"reconcile left {len(report.failures)} resource(s); details: "
                           + json.dumps(report.failures[:5]))
