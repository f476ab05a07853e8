"""The Firestore client (the emulator locally) and what every Firestore repository shares."""

from __future__ import annotations

from functools import lru_cache

from google.cloud import firestore

from shared.config import Settings, get_settings

# Attempts of one transaction before it fails. Firestore aborts a contended transaction after a lock
# wait; with 8+ events for one NIK arriving together (or dozens of merge tasks ending together),
# a few attempts are not enough.
TRANSACTION_ATTEMPTS = 40
# Writes per batched write or commit (Firestore's limit).
BATCH_LIMIT = 500


@lru_cache(maxsize=4)
def _client(project_id: str, database: str) -> firestore.Client:
    return firestore.Client(project=project_id, database=database)


def firestore_client(settings: Settings | None = None) -> firestore.Client:
    settings = settings or get_settings()
    return _client(settings.project_id, settings.firestore_database)
