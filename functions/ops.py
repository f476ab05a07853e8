"""Scheduled ops work, both published by Cloud Scheduler: ``reconcile`` (ops-reconcile) rewrites
references that reached a duplicate after its merge finished (body ``{"full": bool}``); ``sweep``
(ops-sweep) continues or fails merge work stuck past ``DEDUP_STUCK_AFTER_SECONDS`` (body ``{}``)."""

from __future__ import annotations

import json
from functools import partial

import functions_framework

from functions._delivery import parse_or_acknowledge
from shared.bootstrap import groups, merge_deps, review_items, upkeep_marks
from shared.config import get_settings
from shared.messages import ReconcileRun, SweepRun, decode
from shared.services.reconcile import reconcile
from shared.services.sweeper import sweep


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


@functions_framework.cloud_event
def sweep_stuck_work(cloud_event) -> None:
    run = parse_or_acknowledge(cloud_event, partial(decode, message_type=SweepRun), "ops-sweep")
    if run is not None:
        settings = get_settings()
        # With the review items and upkeep marks: each sweep also runs a slice of the one-time review
        # tracking until it is done (``shared.services.review_tracking``).
        sweep(merge_deps(settings), groups(settings), older_than_seconds=run.older_than_seconds,
              reviews=review_items(settings), marks=upkeep_marks(settings))
