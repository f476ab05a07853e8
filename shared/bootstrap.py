"""The composition root: builds services with their adapters from settings, once per process.

Entry points (functions/, ops/) ask here for a service instead of wiring adapters themselves, so a
process holds one FHIR connection pool and one Firestore client per configuration.
"""

from __future__ import annotations

import threading

from shared.adapters.firestore import firestore_client
from shared.adapters.merge_jobs import MergeJobs
from shared.adapters.patient_index import PatientIndex
from shared.adapters.pubsub import Publisher
from shared.config import Settings
from shared.fhir.client import FhirClient
from shared.services.matching import MatchingService
from shared.services.merge_deps import MergeDeps

_lock = threading.RLock()  # builders call each other (matching needs the index)
_built: dict[tuple[str, str], object] = {}


def _once(kind: str, settings: Settings, build):
    key = (kind, settings.model_dump_json())
    with _lock:
        if key not in _built:
            _built[key] = build()
        return _built[key]


def fhir_client(settings: Settings) -> FhirClient:
    return _once("fhir", settings, lambda: FhirClient.from_settings(settings))


def patient_index(settings: Settings) -> PatientIndex:
    return _once("index", settings, lambda: PatientIndex(firestore_client(settings), settings))


def matching_service(settings: Settings) -> MatchingService:
    return _once("matching", settings, lambda: MatchingService(
        settings, patient_index(settings), fhir_client(settings), Publisher(settings), firestore_client(settings)))


def merge_deps(settings: Settings) -> MergeDeps:
    return _once("merge", settings, lambda: MergeDeps(
        settings=settings, fhir=fhir_client(settings), jobs=MergeJobs(firestore_client(settings), settings),
        index=patient_index(settings), publisher=Publisher(settings)))
