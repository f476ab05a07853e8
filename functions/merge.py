"""Pub/Sub entry points of the merge pipeline (docs/DESIGN.md, "Functions").

Each parses its CloudEvent and calls one service; an exception makes Pub/Sub redeliver.
"""

from __future__ import annotations

from functools import lru_cache

import functions_framework

from shared.adapters.firestore import firestore_client
from shared.adapters.merge_jobs import MergeJobs
from shared.adapters.patient_index import PatientIndex
from shared.adapters.pubsub import Publisher
from shared.config import get_settings
from shared.fhir.client import FhirClient
from shared.services.merge import MergeDeps, decode_pubsub_message, fan_out, finalise, run_task


@lru_cache(maxsize=1)
def _deps() -> MergeDeps:
    settings = get_settings()
    db = firestore_client(settings)
    return MergeDeps(settings=settings, fhir=FhirClient.from_settings(settings), jobs=MergeJobs(db, settings),
                     index=PatientIndex(db, settings), publisher=Publisher(settings))


@functions_framework.cloud_event
def merge_fanout(cloud_event):
    fan_out(decode_pubsub_message(cloud_event.data), _deps())


@functions_framework.cloud_event
def merge_worker(cloud_event):
    run_task(decode_pubsub_message(cloud_event.data), _deps())


@functions_framework.cloud_event
def merge_finaliser(cloud_event):
    finalise(decode_pubsub_message(cloud_event.data), _deps())
