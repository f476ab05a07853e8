"""The composition root: the one place that builds adapters, and services with them, from settings.

Entry points (functions/, ops/, tools/) ask here for a service instead of wiring adapters themselves,
so a process holds one FHIR connection pool, one Firestore client and one publisher per configuration.
Tests that want other adapters (in-memory fakes) build the services directly.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

from pydantic import SecretStr

from shared.adapters.audit import FirestoreAuditLog
from shared.adapters.backfill_runs import FirestoreBackfillRuns
from shared.adapters.caller_auth import EitherVerifier, GoogleIdTokenVerifier, SharedSecretVerifier
from shared.adapters.firestore import firestore_client
from shared.adapters.firestore_bulk import FirestoreIndexBulk
from shared.adapters.firestore_index import FirestoreGroups, FirestorePatientKeys, FirestoreReviewItems
from shared.adapters.merge_jobs import MergeJobs
from shared.adapters.pubsub import Publisher
from shared.adapters.upkeep_marks import FirestoreUpkeepMarks
from shared.config import ConfigurationError, Settings, get_settings
from shared.fhir.client import FhirClient
from shared.ports.callers import CallerVerifier
from shared.ports.model_store import ModelStore
from shared.ports.patient_source import PatientSource
from shared.services.explicit_merge import ExplicitMerges
from shared.services.matching import MatchingService
from shared.services.merge_deps import MergeDeps
from shared.services.merge_requests import MergeRequests
from shared.services.models import CurrentModelCache, ModelRegistry
from shared.services.patient_merge import PatientMergeOperation
from shared.services.report import ReportSources
from shared.services.review import ReviewService

_lock = threading.RLock()  # builders call each other (matching needs the index)
_built: dict[tuple[str, str], object] = {}


def _settings_key(settings: Settings) -> str:
    """The whole configuration, secrets included (``model_dump_json`` masks them, and two settings that
    differ only in a key or a token must not share an adapter)."""
    values = {name: value.get_secret_value() if isinstance(value, SecretStr) else value
              for name, value in settings}
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()


def _once(kind: str, settings: Settings, build):
    key = (kind, _settings_key(settings))
    with _lock:
        if key not in _built:
            _built[key] = build()
        return _built[key]


# --- adapters ---------------------------------------------------------------------------------------
def fhir_client(settings: Settings) -> FhirClient:
    return _once("fhir", settings, lambda: FhirClient.from_settings(settings))


def publisher(settings: Settings) -> Publisher:
    return _once("publisher", settings, lambda: Publisher(settings))


def review_items(settings: Settings) -> FirestoreReviewItems:
    return _once("review_items", settings, lambda: FirestoreReviewItems(firestore_client(settings), settings))


def groups(settings: Settings) -> FirestoreGroups:
    return _once("groups", settings, lambda: FirestoreGroups(firestore_client(settings), settings,
                                                             review_items(settings)))


def patient_keys(settings: Settings) -> FirestorePatientKeys:
    return _once("patient_keys", settings, lambda: FirestorePatientKeys(firestore_client(settings), settings))


def merge_jobs(settings: Settings) -> MergeJobs:
    return _once("merge_jobs", settings, lambda: MergeJobs(firestore_client(settings), settings))


def audit_log(settings: Settings) -> FirestoreAuditLog:
    return _once("audit_log", settings, lambda: FirestoreAuditLog(firestore_client(settings), settings))


def backfill_runs(settings: Settings) -> FirestoreBackfillRuns:
    return _once("backfill_runs", settings, lambda: FirestoreBackfillRuns(firestore_client(settings), settings))


def upkeep_marks(settings: Settings) -> FirestoreUpkeepMarks:
    return _once("upkeep_marks", settings, lambda: FirestoreUpkeepMarks(firestore_client(settings), settings))


def index_bulk(settings: Settings) -> FirestoreIndexBulk:
    return _once("index_bulk", settings, lambda: FirestoreIndexBulk(firestore_client(settings), settings))


def model_store(settings: Settings) -> ModelStore | None:
    """The district's model store (``DEDUP_MODEL_STORE``): a Cloud Storage bucket, or a directory; None
    when unset (the shipped default model decides)."""
    def build() -> ModelStore | None:
        if not settings.model_store:
            return None
        if settings.model_store.startswith("gs://"):
            from google.cloud import storage

            from shared.adapters.model_store_gcs import GcsModelStore, parse_bucket_url

            bucket, prefix = parse_bucket_url(settings.model_store)
            return GcsModelStore(storage.Client(project=settings.project_id), bucket, prefix)
        from shared.adapters.model_store_files import FileModelStore

        return FileModelStore(settings.model_store)
    return _once("model_store", settings, build)


def patient_source(settings: Settings, *, ndjson=None, page_size: int = 1000, read_workers: int = 4,
                   copy_first: bool = False) -> PatientSource:
    """Every Patient of the district: the FHIR server, or a folder of NDJSON (``ndjson``) without it
    (``copy_first``: read once in sequence into the backfill's own spool, for a mounted bucket)."""
    from shared.adapters.ndjson_patients import NdjsonPatients
    from shared.fhir.patient_scan import FhirPatientScan

    if ndjson is not None:
        return NdjsonPatients(ndjson, page_size, copy_first=copy_first)
    return FhirPatientScan(fhir_client(settings), page_size=page_size, workers=read_workers, sort=settings.scan_sort)


def caller_verifier(settings: Settings) -> CallerVerifier:
    """The relay's caller check: a Google ID token (audience + allowed callers), a shared secret, or
    either. Neither configured raises ``ConfigurationError``: there is no built-in credential."""
    def build() -> CallerVerifier:
        token = (GoogleIdTokenVerifier(settings.relay_audience, settings.relay_allowed_callers)
                 if settings.relay_audience else None)
        secret = (SharedSecretVerifier(settings.relay_shared_secret.get_secret_value())
                  if settings.relay_shared_secret else None)
        if token and secret:
            return EitherVerifier(token, secret)
        if token or secret:
            return token or secret
        raise ConfigurationError("the relay has no caller check: set DEDUP_RELAY_AUDIENCE and "
                                 "DEDUP_RELAY_ALLOWED_CALLERS, or DEDUP_RELAY_SHARED_SECRET")
    return _once("caller_verifier", settings, build)


# --- services ---------------------------------------------------------------------------------------
def model_registry(settings: Settings) -> ModelRegistry:
    return _once("model_registry", settings, lambda: ModelRegistry(model_store(settings)))


def current_model(settings: Settings) -> CurrentModelCache:
    """The model that decides in this process (call it): the current version of the district's store, else
    the shipped default, loaded when the first decision needs it; a promoted version within
    ``model_refresh_seconds``."""
    return _once("current_model", settings, lambda: CurrentModelCache(model_registry(settings),
                                                                     settings.model_refresh_seconds))


def merge_requests(settings: Settings) -> MergeRequests:
    return _once("merge_requests", settings, lambda: MergeRequests(settings, groups(settings), publisher(settings),
                                                                      patient_keys(settings)))


def matching_service(settings: Settings) -> MatchingService:
    return _once("matching", settings, lambda: MatchingService(
        settings, groups(settings), patient_keys(settings), fhir_client(settings), merge_requests(settings),
        model=current_model(settings)))


def merge_deps(settings: Settings) -> MergeDeps:
    return _once("merge", settings, lambda: MergeDeps(
        settings=settings, fhir=fhir_client(settings), jobs=merge_jobs(settings), index=merge_requests(settings),
        publisher=publisher(settings)))


def explicit_merges(settings: Settings) -> ExplicitMerges:
    return _once("explicit_merges", settings, lambda: ExplicitMerges(
        settings, matching_service(settings), groups(settings), patient_keys(settings), merge_requests(settings),
        fhir_client(settings)))


def patient_merge_operation(settings: Settings) -> PatientMergeOperation:
    return _once("patient_merge", settings, lambda: PatientMergeOperation(
        settings, fhir_client(settings), explicit_merges(settings), merge_deps(settings), merge_jobs(settings)))


def review_service(settings: Settings) -> ReviewService:
    return _once("review", settings, lambda: ReviewService(
        review_items(settings), groups(settings), matching_service(settings), fhir_client(settings),
        audit=audit_log(settings), jobs=merge_jobs(settings), settings=settings))


def report_sources(settings: Settings) -> ReportSources:
    return _once("report", settings, lambda: ReportSources(
        keys=patient_keys(settings), groups=groups(settings), reviews=review_items(settings),
        jobs=merge_jobs(settings)))


def scoring_engine(engine: str | None, spark_master: str | None = None, settings: Settings | None = None):
    """The batch backfill's Splink engine: ``duckdb`` (in process), ``spark`` (``spark_master``), or None
    (no bulk scoring: the model scores each pair as it is decided). Splink is an ops-side dependency."""
    if engine is None or engine == "none":
        return None
    from shared.ports.pair_scoring import EngineUnavailable

    try:
        from shared.adapters.splink_scoring import SplinkScoring
    except ImportError as error:
        raise EngineUnavailable(f"--engine {engine} needs Splink: pip install -r requirements-dev.txt "
                                f"({error.name} is missing)") from error
    settings = settings or get_settings()
    return SplinkScoring(engine, spark_master, memory_limit=settings.duckdb_memory_limit,
                         temp_directory=settings.duckdb_temp_directory)


def batch_backfill(settings: Settings, *, work_dir, ndjson=None, page_size: int = 1000, read_workers: int = 4,
                   write_workers: int = 4, decide_workers: int | None = None, listener=None, with_fhir: bool = True,
                   copy_first: bool = False, engine: str | None = None, spark_master: str | None = None,
                   keep_dir=None):
    """A batch backfill over the FHIR server, or over NDJSON files (``ndjson``: a folder) without
    reading the server. ``with_fhir=False``: no FHIR server at all; patients whose groups changed
    under the run are then left to their next live event instead of re-read. ``engine``: the Splink
    engine scoring the pairs in bulk before deciding (``scoring_engine``; None: the model scores each pair).
    ``keep_dir``: a durable folder holding a copy of the run's decisions (``batch_keep``)."""
    from shared.services.batch_backfill import BatchBackfill
    from shared.services.batch_keep import DecisionsKeep
    from shared.services.batch_write import Listener

    source = patient_source(settings, ndjson=ndjson, page_size=page_size, read_workers=read_workers,
                            copy_first=copy_first)
    return BatchBackfill(settings=settings, source=source, store=index_bulk(settings), publisher=publisher(settings),
                         checkpoints=backfill_runs(settings), work_dir=work_dir,
                         incremental=matching_service(settings) if with_fhir else None,
                         write_workers=write_workers, decide_workers=decide_workers or os.cpu_count() or 1,
                         listener=listener or Listener(), model=current_model(settings)(),
                         engine=scoring_engine(engine, spark_master, settings),
                         keep=None if keep_dir is None else DecisionsKeep(Path(keep_dir)))
