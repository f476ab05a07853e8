"""The matching index read and written in bulk on Firestore (``shared.ports.index_bulk``).

Writes go in atomic batches of up to 500 (``BATCH_LIMIT``), each document under its precondition:
``create`` for a document that did not exist when read, ``update`` with ``last_update_time`` for one
that did (every field the stored document has and ours has not is deleted, so the result equals a
``set``). A batch fails whole when one precondition fails: it is then split in halves until the
conflicting documents stand alone, so one live event costs a few extra commits, not a lost batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from google.api_core.datetime_helpers import DatetimeWithNanoseconds
from google.api_core.exceptions import AlreadyExists, Conflict, FailedPrecondition, NotFound
from google.cloud import firestore

from shared.adapters.firestore import BATCH_LIMIT
from shared.config import Settings
from shared.ports.index_bulk import INDEX_COLLECTIONS, DocWrite, IndexBulkStore, StoredDoc, WriteOutcome

_PRECONDITION_ERRORS = (AlreadyExists, Conflict, FailedPrecondition, NotFound)
_STAMPS = ("updated_at",)  # written at each write: not part of what makes two documents the same


def same_document(ours: dict, stored: dict) -> bool:
    return {k: v for k, v in ours.items() if k not in _STAMPS} == {k: v for k, v in stored.items() if k not in _STAMPS}


def _version(snapshot) -> str:
    return snapshot.update_time.rfc3339()


class FirestoreIndexBulk(IndexBulkStore):
    def __init__(self, db: firestore.Client, settings: Settings):
        self._db = db
        self._settings = settings

    def _collection(self, collection: str):
        if collection not in INDEX_COLLECTIONS:
            raise ValueError(f"not an index collection: {collection}")
        return self._db.collection(self._settings.collection(collection))

    def is_empty(self) -> bool:
        return not any(any(True for _ in self._collection(c).select([]).limit(1).stream()) for c in INDEX_COLLECTIONS)

    def scan(self, collection: str) -> Iterator[StoredDoc]:
        for snapshot in self._collection(collection).stream():
            yield StoredDoc(collection, snapshot.id, snapshot.to_dict(), _version(snapshot))

    def read_many(self, collection: str, doc_ids: Sequence[str]) -> dict[str, StoredDoc]:
        found: dict[str, StoredDoc] = {}
        refs = [self._collection(collection).document(doc_id) for doc_id in doc_ids]
        for start in range(0, len(refs), BATCH_LIMIT):
            for snapshot in self._db.get_all(refs[start:start + BATCH_LIMIT]):
                if snapshot.exists:
                    found[snapshot.id] = StoredDoc(collection, snapshot.id, snapshot.to_dict(), _version(snapshot))
        return found

    def write(self, writes: Sequence[DocWrite], *, check_first: bool = False) -> list[WriteOutcome]:
        if len(writes) > BATCH_LIMIT:
            raise ValueError(f"at most {BATCH_LIMIT} writes per call")
        outcomes: list[WriteOutcome | None] = [None] * len(writes)
        pending = list(range(len(writes)))
        if check_first:
            pending = self._drop_same(writes, pending, outcomes)
        stored: dict[tuple[str, str], dict] = {}
        if any(writes[i].expected is not None and not writes[i].fields for i in pending):
            # Fields the stored document has and ours has not are deleted by the update.
            for i in pending:
                if writes[i].expected is not None and not writes[i].fields:
                    stored[(writes[i].collection, writes[i].doc_id)] = {}
            for collection in {c for c, _ in stored}:
                ids = [d for c, d in stored if c == collection]
                for doc_id, doc in self.read_many(collection, ids).items():
                    stored[(collection, doc_id)] = doc.data
        self._commit(writes, pending, outcomes, stored)
        return [outcome or WriteOutcome.CONFLICT for outcome in outcomes]

    def _drop_same(self, writes, pending, outcomes) -> list[int]:
        remaining = []
        by_collection: dict[str, list[int]] = {}
        for i in pending:
            by_collection.setdefault(writes[i].collection, []).append(i)
        for collection, indexes in by_collection.items():
            found = self.read_many(collection, [writes[i].doc_id for i in indexes])
            for i in indexes:
                doc = found.get(writes[i].doc_id)
                if doc is not None and not writes[i].fields and same_document(writes[i].data, doc.data):
                    outcomes[i] = WriteOutcome.SAME
                else:
                    remaining.append(i)
        return sorted(remaining)

    def _commit(self, writes, indexes: list[int], outcomes, stored) -> None:
        if not indexes:
            return
        batch = self._db.batch()
        for i in indexes:
            write = writes[i]
            ref = self._collection(write.collection).document(write.doc_id)
            if write.expected is None:
                batch.create(ref, write.data)
                continue
            option = self._db.write_option(last_update_time=DatetimeWithNanoseconds.from_rfc3339(write.expected))
            data = dict(write.data)
            if not write.fields:
                data.update({k: firestore.DELETE_FIELD
                             for k in stored.get((write.collection, write.doc_id), {}) if k not in data})
                # Top-level keys are field paths here; ours never contain a dot or a backquote.
            batch.update(ref, data, option=option)
        try:
            batch.commit()
        except _PRECONDITION_ERRORS:
            if len(indexes) == 1:
                outcomes[indexes[0]] = self._conflict_or_same(writes[indexes[0]])
                return
            half = len(indexes) // 2
            self._commit(writes, indexes[:half], outcomes, stored)
            self._commit(writes, indexes[half:], outcomes, stored)
            return
        for i in indexes:
            outcomes[i] = WriteOutcome.WRITTEN

    def _conflict_or_same(self, write: DocWrite) -> WriteOutcome:
        doc = self.read_many(write.collection, [write.doc_id]).get(write.doc_id)
        if doc is not None and not write.fields and same_document(write.data, doc.data):
            return WriteOutcome.SAME
        return WriteOutcome.CONFLICT
