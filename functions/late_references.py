"""Pub/Sub entry point of the live late-reference fix (resource-changes topic): a clinical resource that
references an already merged duplicate is rewritten to its master at once."""

from __future__ import annotations

import functions_framework

from functions._delivery import parse_or_acknowledge
from shared.bootstrap import merge_deps
from shared.config import get_settings
from shared.logging import get_logger
from shared.messages import Ignored
from shared.resource_changes import parse_resource_change
from shared.services.late_references import fix_late_references as fix

log = get_logger(__name__)


@functions_framework.cloud_event
def fix_late_references(cloud_event) -> None:
    parsed = parse_or_acknowledge(cloud_event, parse_resource_change, "resource-changes")
    if parsed is None or isinstance(parsed, Ignored):
        return
    fix(parsed, merge_deps(get_settings()))
