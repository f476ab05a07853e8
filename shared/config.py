"""All configuration, read from environment variables in one place.

Every setting has the local stack's value as its default, so a newcomer sets nothing; a district's
deployment overrides them through the function's environment (see infra/). Variables are named
``DEDUP_<FIELD>`` in upper case, e.g. ``DEDUP_FHIR_BASE_URL``. The emulator hosts are the Google
clients' own variables (``FIRESTORE_EMULATOR_HOST``, ``PUBSUB_EMULATOR_HOST``) and are not repeated here.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEDUP_", frozen=True, extra="ignore")

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
    nik_hash_key: SecretStr = SecretStr("local-development-key-not-a-secret")
    # Bearer token the FHIR server's rest-hook Subscription sends to the subscription-relay function.
    relay_token: SecretStr = SecretStr("local-relay-token")

    # --- Pub/Sub topics ----------------------------------------------------------------------
    topic_patient_changes: str = "patient-changes"
    topic_ops_force_merge: str = "ops-force-merge"
    topic_merge_requests: str = "merge-requests"
    topic_merge_tasks: str = "merge-tasks"
    topic_merge_finalise: str = "merge-finalise"
    # Cloud Scheduler publishes here (infra/); the reconcile function rewrites late references.
    topic_ops_reconcile: str = "ops-reconcile"
    # Changes of every other resource type (Healthcare API notifications, relayed FHIR Subscriptions):
    # the late-references function rewrites a reference to an already merged duplicate at once.
    topic_resource_changes: str = "resource-changes"

    # --- Firestore ---------------------------------------------------------------------------
    firestore_database: str = "(default)"
    # Prefix of every collection name, so several test runs or districts can share one database.
    collection_prefix: str = ""

    # --- matching thresholds (rapidfuzz scores, 0..100; calibrated, see README) --------------
    name_match_threshold: float = 97.0
    name_review_threshold: float = 70.0
    # Name threshold inside one NIK group when birth date agrees, gender does not conflict and the
    # NIK agrees with both records: the NIK, birth date and sex already agree, so the name only has
    # to rule out a colliding (mistyped) NIK of a differently named person. See README "Matching".
    nik_name_match_threshold: float = 85.0
    demographic_auto_merge_threshold: float = 97.0
    demographic_auto_merge_enabled: bool = True

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

    # Patient/$merge answers 200 when the merge completes within this many seconds, else 202 with a Task.
    patient_merge_wait_seconds: float = 20.0

    def collection(self, name: str) -> str:
        return f"{self.collection_prefix}{name}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings. Tests that change the environment call ``get_settings.cache_clear()``."""
    return Settings()
