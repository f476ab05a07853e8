"""Pub/Sub entry points of the merge pipeline (docs/DESIGN.md, "Functions").

Each decodes its typed message and calls one use case; an exception makes Pub/Sub redeliver.
"""

from __future__ import annotations

from functools import partial

import functions_framework

from functions._delivery import parse_or_acknowledge
from shared.bootstrap import merge_deps
from shared.config import get_settings
from shared.messages import FinaliseMerge, MergeRequested, MergeTask, decode
from shared.services.merge_fanout import fan_out
from shared.services.merge_finalise import finalise
from shared.services.merge_worker import run_task


@functions_framework.cloud_event
def merge_fanout(cloud_event):
    message = parse_or_acknowledge(cloud_event, partial(decode, message_type=MergeRequested), "merge-requests")
    if message is not None:
        fan_out(message, merge_deps(get_settings()))


@functions_framework.cloud_event
def merge_worker(cloud_event):
    message = parse_or_acknowledge(cloud_event, partial(decode, message_type=MergeTask), "merge-tasks")
    if message is not None:
        run_task(message, merge_deps(get_settings()))


@functions_framework.cloud_event
def merge_finaliser(cloud_event):
    message = parse_or_acknowledge(cloud_event, partial(decode, message_type=FinaliseMerge), "merge-finalise")
    if message is not None:
        finalise(message, merge_deps(get_settings()))
