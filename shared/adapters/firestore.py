"""The Firestore client (the emulator locally). Repositories in this package take it as an argument."""

from __future__ import annotations

from functools import lru_cache

from google.cloud import firestore

from shared.config import Settings, get_settings


@lru_cache(maxsize=4)
def _client(project_id: str, database: str) -> firestore.Client:
    return firestore.Client(project=project_id, database=database)


def firestore_client(settings: Settings | None = None) -> firestore.Client:
    settings = settings or get_settings()
    return _client(settings.project_id, settings.firestore_database)
