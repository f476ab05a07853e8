"""All configuration, read from environment variables in one place.

Every setting has the local stack's value as its default, so a newcomer sets nothing; a district's
deployment overrides them through the function's environment (see infra/). Variables are named
``DEDUP_<FIELD>`` in upper case, e.g. ``DEDUP_FHIR_BASE_URL``. The emulator hosts are the Google
clients' own variables (``FIRESTORE_EMULATOR_HOST``, ``PUBSUB_EMULATOR_HOST``) and are not repeated here.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.logging import get_logger

log = get_logger(__name__)

# Calibrated name-score thresholds (README "Name matching"); they are the defaults and the floors: a
# lower value merges (or bridges through review) pairs the calibration saw as different people.
CALIBRATED_NAME_MATCH_THRESHOLD = 97.0
CALIBRATED_NAME_REVIEW_THRESHOLD = 70.0
CALIBRATED_NIK_NAME_MATCH_THRESHOLD = 85.0
CALIBRATED_DEMOGRAPHIC_AUTO_MERGE_THRESHOLD = 97.0
# The matching model's auto-merge evidence weight (docs/matching.md "Matching model"): on the seed-1 calibration no
# false pair down to 16, false pairs at 12; 20 keeps a margin of at least 4 bits (a factor of 16).
CALIBRATED_MODEL_MERGE_WEIGHT = 20.0
CALIBRATED_THRESHOLD_FLOORS = {
    "name_match_threshold": CALIBRATED_NAME_MATCH_THRESHOLD,
    "name_review_threshold": CALIBRATED_NAME_REVIEW_THRESHOLD,
    "nik_name_match_threshold": CALIBRATED_NIK_NAME_MATCH_THRESHOLD,
    "demographic_auto_merge_threshold": CALIBRATED_DEMOGRAPHIC_AUTO_MERGE_THRESHOLD,
    "model_merge_weight": CALIBRATED_MODEL_MERGE_WEIGHT,
}
# The NIK key of the local stack. Anywhere else it would build a second index under keys nobody else
# uses (a backfill against a real project would look complete and match nothing), so it is refused.
DEVELOPMENT_NIK_HASH_KEY = "local-development-key-not-a-secret"


# A Cloud Storage bucket name (3-63 of lower-case letters, digits, '-', '_', '.') and an optional prefix.
_GS_URL = re.compile(r"^gs://[a-z0-9][a-z0-9._-]{1,61}[a-z0-9](/[A-Za-z0-9._/-]*)?$")


class ConfigurationError(ValueError):
    """Settings that must not run (pydantic reports it as a validation error naming the variables)."""


# A size DuckDB's ``SET memory_limit`` reads (Terraform's variable validation uses the same pattern).
DUCKDB_MEMORY_LIMIT = r"^[0-9]+(\.[0-9]+)?(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEDUP_", frozen=True, extra="ignore")

    # --- where the process runs ---------------------------------------------------------------
    # local: the local stack, tests and tools (development defaults allowed); deployed: a district's
    # project (Terraform sets it). Unset: local when the Firestore emulator is configured, else deployed,
    # so a process that says nothing gets the strict checks.
    environment: Literal["local", "deployed"] | None = None

    # --- where things are -------------------------------------------------------------------
    project_id: str = "dedup-local"
    fhir_base_url: str = "http://127.0.0.1:8090/fhir"
    # none: local server; google: Application Default Credentials (Healthcare API); bearer: static token
    fhir_auth: Literal["none", "google", "bearer"] = "none"
    fhir_bearer_token: SecretStr | None = None

    # --- FHIR conventions of the district ----------------------------------------------------
    nik_system: str = "https://fhir.kemkes.go.id/id/nik"
    nik_ibu_system: str = "https://fhir.kemkes.go.id/id/nik-ibu"
    golden_tag_system: str = "http://terminology.kemkes.go.id/sp-replaced-by"
    # meta.source prefixes or identifier systems tell which legacy system a patient came from;
    # earlier in this list = preferred as master when nothing else decides.
    source_priority: list[str] = Field(default_factory=lambda: ["simrs", "simpus", "sikda", "pcare", "lab"])

    # --- secrets -----------------------------------------------------------------------------
    # Key of the HMAC that turns a NIK into a storage key / log token. In Google Cloud it comes
    # from Secret Manager through the function's environment. The default is for the local stack only.
    nik_hash_key: SecretStr = SecretStr(DEVELOPMENT_NIK_HASH_KEY)

    # --- who may call the subscription relay (shared/adapters/caller_auth.py) ----------------
    # A Google-signed ID token whose audience is the relay's own URL, from one of these service
    # accounts; and/or, for FHIR servers that cannot mint ID tokens, "Bearer <shared secret>" (Secret
    # Manager). No default: the relay refuses every call until one of the two is configured.
    relay_audience: str | None = None
    relay_allowed_callers: list[str] = Field(default_factory=list)
    relay_shared_secret: SecretStr | None = None

    # --- trust in patient-changes messages (docs/DESIGN.md "Following one event") ------------
    # True only where the patient-changes topic has no publisher but the Healthcare API's service
    # agent: infra/modules/district sets it exactly where it grants publish on the topic to that agent
    # alone (tests/infra checks both). Otherwise every message is a hint: matching reads the Patient.
    trust_healthcare_notifications: bool = False

    # --- Pub/Sub topics ----------------------------------------------------------------------
    topic_patient_changes: str = "patient-changes"
    topic_ops_force_merge: str = "ops-force-merge"
    topic_merge_requests: str = "merge-requests"
    topic_merge_tasks: str = "merge-tasks"
    topic_merge_finalise: str = "merge-finalise"
    # Cloud Scheduler publishes here (infra/); the reconcile function rewrites late references.
    topic_ops_reconcile: str = "ops-reconcile"
    # Messages no entry point could understand, kept as they came (functions/_delivery.py).
    topic_quarantine: str = "quarantine"
    # Cloud Scheduler publishes here (infra/); the sweeper continues or fails stuck merge work.
    topic_ops_sweep: str = "ops-sweep"
    # Changes of every other resource type (Healthcare API notifications, relayed FHIR Subscriptions):
    # the late-references function rewrites a reference to an already merged duplicate at once.
    topic_resource_changes: str = "resource-changes"

    # --- Firestore ---------------------------------------------------------------------------
    firestore_database: str = "(default)"
    # Prefix of every collection name, so several test runs or districts can share one database.
    collection_prefix: str = ""

    # --- matching thresholds (rapidfuzz scores, 0..100; calibrated, see README) --------------
    name_match_threshold: float = CALIBRATED_NAME_MATCH_THRESHOLD
    name_review_threshold: float = CALIBRATED_NAME_REVIEW_THRESHOLD
    # Name threshold inside one NIK group when birth date agrees, gender does not conflict and the
    # NIK agrees with both records: the NIK, birth date and sex already agree, so the name only has
    # to rule out a colliding (mistyped) NIK of a differently named person. See README "Matching".
    nik_name_match_threshold: float = CALIBRATED_NIK_NAME_MATCH_THRESHOLD
    demographic_auto_merge_threshold: float = CALIBRATED_DEMOGRAPHIC_AUTO_MERGE_THRESHOLD
    demographic_auto_merge_enabled: bool = True
    # Members a candidate block (birth date + sex, NIK prefix, name key + birth year, phone) takes at most
    # (~600 bytes each: ~120 KB, far below Firestore's 1 MiB document limit whatever the district). Beyond
    # it, the record's other keys find its candidates (a missed merge at worst, never a wrong one).
    block_member_cap: int = Field(default=200, ge=2)
    # --- the batch backfill's DuckDB (the score phase and its cut by part: shared/adapters/splink_scoring.py,
    # score_files.py). DuckDB's own default is 80 % of the machine's memory, which the deciding workers need
    # too; past this limit it spills to the temp directory (unset: <work dir>/duckdb-spill). The Cloud Run
    # Job sets both (infra/modules/district/backfill_job.tf).
    duckdb_memory_limit: str = Field(default="2GB", pattern=DUCKDB_MEMORY_LIMIT)
    duckdb_temp_directory: str | None = None
    # --- the trained matching model (shared/linkage; docs/matching.md "Matching model") ---------
    # Evidence weights (log2 Bayes factors summed over the comparisons, the prior left out: it depends on
    # the district's size). Auto-merge at or above ``model_merge_weight``, counted without household
    # evidence (a shared phone); review from ``model_review_weight``; no match below.
    # Chosen on a calibration run so that precision is 1.000 with a margin; the floor is the lowest
    # value a deployment may set.
    model_merge_weight: float = CALIBRATED_MODEL_MERGE_WEIGHT
    model_review_weight: float = 10.0
    # Where the district's trained models are kept (shared/ports/model_store.py): gs://<bucket>[/prefix]
    # in a district (Terraform: the model bucket), a directory on the local stack (`dedup up`: .stack/models).
    # Unset: no store; every process decides with the model shipped in the package.
    model_store: str | None = None
    # A running process reads the store's pointer again at most this often and loads a promoted version.
    model_refresh_seconds: int = Field(default=300, ge=1)
    # A threshold under its calibrated floor is refused unless this is set (after a calibration on the
    # district's own labelled pairs); the override is logged as a warning at start-up.
    allow_thresholds_below_calibration: bool = False

    # --- FHIR client behaviour ---------------------------------------------------------------
    fhir_timeout_seconds: float = 30.0
    fhir_max_attempts: int = 6
    fhir_retry_budget_seconds: float = 120.0
    fhir_max_connections: int = 32
    fhir_page_size: int = 500
    fhir_concurrency: int = 16
    merge_batch_size: int = 100
    # Backfill and full scans page in this order. The default server order is often _lastUpdated, and
    # merges update patients while a backfill pages: offset-paged servers then skip records. "" = the
    # server's order (a server that rejects _sort=_id; cursor-paged servers such as the Healthcare API).
    scan_sort: str = "_id"

    # --- stuck work (the sweeper, shared/services/sweeper.py) ----------------------------------
    # A merge request or job with no progress for this long is stuck: the sweeper republishes what
    # can continue, and after ``stuck_republish_limit`` republishes marks it failed (with an alert).
    stuck_after_seconds: int = Field(default=1800, ge=1)
    stuck_republish_limit: int = Field(default=3, ge=0)
    # Patient/$merge answers 200 when the merge completes within this many seconds, else 202 with a Task.
    patient_merge_wait_seconds: float = 20.0

    def collection(self, name: str) -> str:
        return f"{self.collection_prefix}{name}"

    @property
    def is_local(self) -> bool:
        if self.environment is not None:
            return self.environment == "local"
        return bool(os.environ.get("FIRESTORE_EMULATOR_HOST"))

    @model_validator(mode="after")
    def _refuse_unsafe_values(self) -> Settings:
        below = {name: getattr(self, name) for name, floor in CALIBRATED_THRESHOLD_FLOORS.items()
                 if getattr(self, name) < floor}
        if below and not self.allow_thresholds_below_calibration:
            raise ConfigurationError(
                "thresholds below their calibrated floors "
                f"{ {name: CALIBRATED_THRESHOLD_FLOORS[name] for name in below} }: {below}; set "
                "DEDUP_ALLOW_THRESHOLDS_BELOW_CALIBRATION=true only after calibrating on the district's pairs")
        if below:
            log.warning("thresholds_below_calibration", thresholds=below, floors=CALIBRATED_THRESHOLD_FLOORS)
        if not self.is_local and self.nik_hash_key.get_secret_value() == DEVELOPMENT_NIK_HASH_KEY:
            raise ConfigurationError(
                "DEDUP_NIK_HASH_KEY is the local development key outside the local stack; set the district's "
                "key (Secret Manager), or DEDUP_ENVIRONMENT=local for the emulators")
        if self.model_store and self.model_store.startswith("gs://") and not _GS_URL.match(self.model_store):
            raise ConfigurationError("DEDUP_MODEL_STORE must be gs://<bucket>[/prefix] or a directory")
        if bool(self.relay_audience) != bool(self.relay_allowed_callers):
            raise ConfigurationError("DEDUP_RELAY_AUDIENCE and DEDUP_RELAY_ALLOWED_CALLERS go together")
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings. Tests that change the environment call ``get_settings.cache_clear()``."""
    return Settings()
