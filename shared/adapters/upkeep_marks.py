"""Upkeep marks in Firestore: ``upkeep/{name}`` (``shared.ports.upkeep``)."""

from __future__ import annotations

from google.cloud import firestore

from shared.config import Settings
from shared.ports.upkeep import UpkeepMarks


class FirestoreUpkeepMarks(UpkeepMarks):
    def __init__(self, db: firestore.Client, settings: Settings):
        self._collection = db.collection(settings.collection("upkeep"))

    def get(self, name: str) -> dict | None:
        snapshot = self._collection.document(name).get()
        return snapshot.to_dict() if snapshot.exists else None

    def put(self, name: str, mark: dict) -> None:
        self._collection.document(name).set(dict(mark))
