"""Backfill checkpoints in Firestore: ``backfill_runs/{run_id}``."""

from __future__ import annotations

from google.cloud import firestore

from shared.config import Settings
from shared.domain.backfill import BackfillProgress
from shared.ports.backfill_runs import BackfillRunRepository


class FirestoreBackfillRuns(BackfillRunRepository):
    def __init__(self, db: firestore.Client, settings: Settings):
        self._collection = db.collection(settings.collection("backfill_runs"))

    def load(self, run_id: str) -> BackfillProgress | None:
        snapshot = self._collection.document(run_id).get()
        return BackfillProgress.from_doc(run_id, snapshot.to_dict()) if snapshot.exists else None

    def save(self, progress: BackfillProgress) -> None:
        self._collection.document(progress.run_id).set(progress.to_doc())
